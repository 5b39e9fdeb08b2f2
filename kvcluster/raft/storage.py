"""The Raft log storage interface and an in-memory implementation.

Contract:
- ``Storage`` is what the core reads: the durable hard state and membership, the stable log
  (entries already persisted by the caller), and the latest snapshot. The core never writes
  to it; the caller persists each ``Ready`` and then reports with ``RawNode.advance``.
- Indices: the log holds entries ``first_index() .. last_index()``; ``term(first_index()-1)``
  is still answerable (it is the snapshot's / compaction point's term).
- ``MemoryStorage`` is the fake shipped for tests and simulation (STYLE.md rule 10); the
  LMDB-backed storage of the node runtime implements the same protocol.
"""

from __future__ import annotations

from typing import Protocol

from kvcluster.errors import Compacted, SnapshotOutOfDate, Unavailable
from kvcluster.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMetadata

__all__ = ["MemoryStorage", "Storage", "limit_size"]


class Storage(Protocol):
    def initial_state(self) -> tuple[HardState, ConfState]:
        """The persisted hard state and the membership as of the last applied change."""
        ...

    def entries(self, lo: int, hi: int, max_size: int) -> list[Entry]:
        """Entries [lo, hi), at least one (if any), at most ``max_size`` bytes beyond the first.

        Raises Compacted if lo <= the compaction point, Unavailable if hi > last_index()+1.
        """
        ...

    def term(self, index: int) -> int:
        """The term of entry ``index``, for first_index()-1 <= index <= last_index()."""
        ...

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def snapshot(self) -> Snapshot:
        """The most recent snapshot (raises Unavailable if it is being made)."""
        ...


def limit_size(entries: list[Entry], max_size: int) -> list[Entry]:
    """The longest prefix of ``entries`` within ``max_size`` bytes, but never empty."""
    if not entries:
        return entries
    size = entries[0].size()
    for i in range(1, len(entries)):
        size += entries[i].size()
        if size > max_size:
            return entries[:i]
    return entries


class MemoryStorage:
    """A Storage kept in memory. ``self._ents[0]`` is a dummy entry at the compaction point."""

    def __init__(self, voters: tuple[int, ...] = (), learners: tuple[int, ...] = ()) -> None:
        self.hard_state = HardState()
        self._snapshot = Snapshot(SnapshotMetadata(0, 0, ConfState(voters, learners)))
        self._ents: list[Entry] = [Entry(0, 0)]

    # -- Storage protocol ------------------------------------------------------------------
    def initial_state(self) -> tuple[HardState, ConfState]:
        hs = self.hard_state
        return HardState(hs.term, hs.vote, hs.commit), self._snapshot.metadata.conf_state

    def entries(self, lo: int, hi: int, max_size: int) -> list[Entry]:
        offset = self._ents[0].index
        if lo <= offset:
            raise Compacted(f"entry {lo} is compacted (first index {offset + 1})")
        if hi > self.last_index() + 1:
            raise Unavailable(f"entries up to {hi - 1} requested; last index {self.last_index()}")
        if len(self._ents) == 1:  # only the dummy entry
            return []
        return limit_size(self._ents[lo - offset : hi - offset], max_size)

    def term(self, index: int) -> int:
        offset = self._ents[0].index
        if index < offset:
            raise Compacted(f"term of {index} is compacted (offset {offset})")
        if index - offset >= len(self._ents):
            raise Unavailable(f"term of {index} requested; last index {self.last_index()}")
        return self._ents[index - offset].term

    def first_index(self) -> int:
        return self._ents[0].index + 1

    def last_index(self) -> int:
        return self._ents[0].index + len(self._ents) - 1

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # -- writes by the caller (the "disk") -------------------------------------------------
    def set_hard_state(self, hs: HardState) -> None:
        self.hard_state = HardState(hs.term, hs.vote, hs.commit)

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace the whole log with ``snap`` (a follower installing a leader's snapshot)."""
        if snap.metadata.index <= self._snapshot.metadata.index:
            raise SnapshotOutOfDate(
                f"snapshot at {snap.metadata.index} is not newer than "
                f"{self._snapshot.metadata.index}"
            )
        self._snapshot = snap
        self._ents = [Entry(snap.metadata.term, snap.metadata.index)]

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record a snapshot of the state machine as of applied ``index``."""
        if index <= self._snapshot.metadata.index:
            raise SnapshotOutOfDate(f"snapshot at {index} is not newer")
        offset = self._ents[0].index
        if index < offset:
            raise Compacted(f"snapshot index {index} is below the compaction point {offset}")
        if index > self.last_index():
            raise Unavailable(f"snapshot index {index} > last index {self.last_index()}")
        term = self._ents[index - offset].term
        self._snapshot = Snapshot(SnapshotMetadata(index, term, conf_state), data)
        return self._snapshot

    def compact(self, compact_index: int) -> None:
        """Drop entries before ``compact_index`` (which becomes the dummy entry)."""
        offset = self._ents[0].index
        if compact_index <= offset:
            raise Compacted(f"already compacted up to {offset}")
        if compact_index > self.last_index():
            raise Unavailable(f"compact {compact_index} > last index {self.last_index()}")
        i = compact_index - offset
        self._ents = [Entry(self._ents[i].term, self._ents[i].index), *self._ents[i + 1 :]]

    def append(self, entries: list[Entry]) -> None:
        """Append ``entries``, truncating any conflicting suffix first."""
        if not entries:
            return
        first = self.first_index()
        last = entries[0].index + len(entries) - 1
        if last < first:
            return  # all of them are already compacted
        if first > entries[0].index:
            entries = entries[first - entries[0].index :]
        offset = entries[0].index - self._ents[0].index
        if offset > len(self._ents):
            raise Unavailable(
                f"missing log entries: last index {self.last_index()}, appending at "
                f"{entries[0].index}"
            )
        del self._ents[offset:]
        self._ents.extend(entries)
