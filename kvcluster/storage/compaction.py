"""When to snapshot and compact a group's log.

Contract:
- Pure arithmetic over indices; the runtime asks after applying and acts on the answer
  (``compact`` in its next write transaction).
- Never compacts past the applied index: an entry leaves the log only after the state
  machine durably holds its effect (a kv group's snapshot is its applied data, captured
  when a follower needs one, so compacting copies nothing).
- ``retained`` is how much applied log the runtime keeps: compaction is due once
  ``threshold`` applied entries sit in the log and then drops the oldest tenth of them, so
  each compaction deletes a small, even amount of log and a follower up to about
  ``threshold`` entries behind still catches up from the log.
"""

from __future__ import annotations

__all__ = ["compaction_index", "retained"]


def retained(threshold: int) -> int:
    """Applied entries left in the log by a compaction due at ``threshold``."""
    if threshold < 1:
        raise ValueError(f"threshold must be >= 1 (got {threshold})")
    return threshold - max(1, threshold // 10)


def compaction_index(
    first_index: int, applied_index: int, threshold: int, keep: int | None = None
) -> int | None:
    """The index to compact up to, or None while the log is short enough.

    Compaction is due once at least ``threshold`` applied entries sit in the log
    (``applied_index - first_index + 1 >= threshold``). Then the log is cut at
    ``applied_index - keep``: ``keep`` applied entries stay so a follower a little behind can
    still catch up from the log rather than with a snapshot; by default ``retained(threshold)``.
    """
    if keep is None:
        keep = retained(threshold)  # ValueError for a threshold below 1
    if threshold < 1 or keep < 0:
        raise ValueError(f"threshold must be >= 1 and keep >= 0 (got {threshold}, {keep})")
    if applied_index - first_index + 1 < threshold:
        return None
    index = applied_index - keep
    return index if index >= first_index else None
