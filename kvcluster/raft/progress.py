"""What a leader knows of one follower's log, and how it paces replication to it.

Contract (after etcd-io/raft tracker/progress.go and tracker/state.go):
- Invariant: ``match_index < next_index``.
- PROBE: the leader does not know where the follower's log ends. It sends one AppendEntries
  per heartbeat interval (``probe_sent`` pauses it) and backs ``next_index`` off on rejection.
- REPLICATE: the follower is caught up; entries stream optimistically (``next_index`` moves on
  send) with at most ``inflights.capacity`` messages outstanding.
- SNAPSHOT: the follower needs a snapshot; nothing else is sent until it is reported done.
- ``maybe_*`` mutators return whether they changed anything.
"""

from __future__ import annotations

import enum
from collections import deque

__all__ = ["Inflights", "Progress", "ProgressState"]


class ProgressState(enum.IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


class Inflights:
    """A bounded window of in-flight AppendEntries, each remembered by its last index."""

    __slots__ = ("_q", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._q: deque[int] = deque()

    def __len__(self) -> int:
        return len(self._q)

    def full(self) -> bool:
        return len(self._q) >= self.capacity

    def add(self, last_index: int) -> None:
        if self.full():
            raise AssertionError("cannot add to a full inflights window")
        self._q.append(last_index)

    def free_le(self, index: int) -> None:
        """Free every in-flight message whose last index is <= ``index``."""
        q = self._q
        while q and q[0] <= index:
            q.popleft()

    def free_first_one(self) -> None:
        """Free the oldest in-flight message (its acknowledgement may have been lost)."""
        if self._q:
            self._q.popleft()

    def reset(self) -> None:
        self._q.clear()


class Progress:
    __slots__ = (
        "inflights",
        "is_learner",
        "match_index",
        "next_index",
        "pending_snapshot",
        "probe_sent",
        "recent_active",
        "state",
    )

    def __init__(self, next_index: int, max_inflight: int, is_learner: bool = False) -> None:
        self.match_index = 0
        self.next_index = next_index
        self.state = ProgressState.PROBE
        self.pending_snapshot = 0
        self.probe_sent = False
        self.recent_active = False
        self.is_learner = is_learner
        self.inflights = Inflights(max_inflight)

    def __repr__(self) -> str:
        return (
            f"Progress({self.state.name} match={self.match_index} next={self.next_index}"
            f"{' learner' if self.is_learner else ''} inflight={len(self.inflights)})"
        )

    # -- state transitions -----------------------------------------------------------------
    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state == ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next_index = max(self.match_index + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next_index = self.match_index + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next_index = self.match_index + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    # -- updates ---------------------------------------------------------------------------
    def maybe_update(self, n: int) -> bool:
        """The follower acknowledged entries up to ``n``. Returns whether match moved."""
        updated = False
        if self.match_index < n:
            self.match_index = n
            updated = True
            self.probe_sent = False
        self.next_index = max(self.next_index, n + 1)
        return updated

    def sent_entries(self, last_index: int, count: int) -> None:
        """Record that an AppendEntries ending at ``last_index`` carrying ``count`` entries left."""
        if self.state == ProgressState.REPLICATE:
            if count:
                self.next_index = last_index + 1
                self.inflights.add(last_index)
        elif self.state == ProgressState.PROBE:
            self.probe_sent = True

    def maybe_decr_to(self, rejected: int, next_hint: int) -> bool:
        """A rejection of the AppendEntries whose previous index was ``rejected``; the next
        index to try is ``next_hint``. Returns False for a stale rejection."""
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match_index:
                return False  # stale: the follower has since acknowledged more
            self.next_index = self.match_index + 1
            return True
        if self.next_index - 1 != rejected:
            return False  # stale: not the probe we sent last
        self.next_index = max(min(rejected, next_hint), self.match_index + 1, 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        if self.state == ProgressState.PROBE:
            return self.probe_sent
        if self.state == ProgressState.REPLICATE:
            return self.inflights.full()
        return True
