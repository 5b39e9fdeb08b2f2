"""What one loop turn of the node runtime persists: a group-commit batch.

Contract:
- Pure data, no I/O. The runtime collects, for every group that produced a ``Ready`` in this
  turn, its snapshot (if any), new entries and hard state (if changed), then hands the whole
  batch to ``NodeStore.persist_ready``: one LMDB write transaction, one sync, for all groups.
- Per group the store applies, in this order: snapshot, entries (truncating a conflicting
  suffix), hard state; groups are written in the order they were added.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from kvcluster.raft.types import Entry, HardState, Ready, Snapshot

__all__ = ["GroupWrite", "WriteBatch"]


@dataclass(slots=True)
class GroupWrite:
    group: int
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)
    hard_state: HardState | None = None

    def is_empty(self) -> bool:
        return (
            (self.snapshot is None or self.snapshot.is_empty())
            and not self.entries
            and self.hard_state is None
        )


class WriteBatch:
    """Writes of many groups, persisted together by ``NodeStore.persist_ready``."""

    __slots__ = ("_writes",)

    def __init__(self) -> None:
        self._writes: list[GroupWrite] = []

    def add_ready(self, group: int, ready: Ready) -> None:
        """Add what ``ready`` asks to persist for ``group`` (nothing if it asks nothing)."""
        self.add(group, snapshot=ready.snapshot, entries=ready.entries, hard_state=ready.hard_state)

    def add(
        self,
        group: int,
        *,
        snapshot: Snapshot | None = None,
        entries: list[Entry] | None = None,
        hard_state: HardState | None = None,
    ) -> None:
        w = GroupWrite(group, snapshot, entries or [], hard_state)
        if not w.is_empty():
            self._writes.append(w)

    def __iter__(self) -> Iterator[GroupWrite]:
        return iter(self._writes)

    def __len__(self) -> int:
        return len(self._writes)

    def __bool__(self) -> bool:
        return bool(self._writes)

    def entry_count(self) -> int:
        return sum(len(w.entries) for w in self._writes)

    def clear(self) -> None:
        self._writes.clear()
