"""When to snapshot and compact a group's log.

Contract:
- Pure arithmetic over indices; the runtime asks after applying and acts on the answer
  (``create_snapshot`` at the applied index, then ``compact``).
- Never compacts past the applied index: an entry leaves the log only after the state
  machine durably holds its effect.
- Replicas of one group compact at different thresholds (``replica_threshold``): taking a
  snapshot copies the group's data and stalls the replica meanwhile, and replicas that
  applied the same entries would otherwise all stall at once.
"""

from __future__ import annotations

__all__ = ["LEADER_FACTOR", "compaction_index", "replica_threshold"]

LEADER_FACTOR = 2
"""A leader compacts at this many times the threshold: its stall stops the whole group."""


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


def replica_threshold(threshold: int, *, leader: bool, rank: int, replicas: int) -> int:
    """The compaction threshold of one replica of a group whose configured threshold is
    ``threshold``; ``rank`` is the replica's place (0-based) among the group's ``replicas``
    voters.

    A follower's stall costs the group nothing while the other voters still make a majority,
    so followers compact at ``threshold * (1 + rank / replicas)``: their periods differ, so
    two stall together only by chance, where with one threshold they would always coincide
    (they apply the same entries). The leader's stall stops the group's commits, so it
    compacts ``LEADER_FACTOR`` times less often (its longer log also lets a lagging follower
    catch up without a snapshot).
    """
    if threshold < 1 or replicas < 1 or not 0 <= rank < replicas:
        raise ValueError(f"bad threshold {threshold}, rank {rank} or replicas {replicas}")
    if leader:
        return threshold * LEADER_FACTOR
    return threshold + threshold * rank // replicas
