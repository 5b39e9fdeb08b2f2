"""When to snapshot and compact a group's log.

Contract:
- Pure arithmetic over indices; the runtime asks after applying and acts on the answer
  (``create_snapshot`` at the applied index, then ``compact``).
- Never compacts past the applied index: an entry leaves the log only after the state
  machine durably holds its effect.
"""

from __future__ import annotations

__all__ = ["compaction_index"]


def compaction_index(
    first_index: int, applied_index: int, threshold: int, keep: int = 0
) -> int | None:
    """The index to compact up to, or None while the log is short enough.

    Compaction is due once at least ``threshold`` applied entries sit in the log
    (``applied_index - first_index + 1 >= threshold``). Then the log is cut at
    ``applied_index - keep``: ``keep`` applied entries stay so a follower a little behind can
    still catch up from the log rather than with a snapshot.
    """
    if threshold < 1 or keep < 0:
        raise ValueError(f"threshold must be >= 1 and keep >= 0 (got {threshold}, {keep})")
    if applied_index - first_index + 1 < threshold:
        return None
    index = applied_index - keep
    return index if index >= first_index else None
