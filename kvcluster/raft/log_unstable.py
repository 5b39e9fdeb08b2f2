"""The unstable tail of the log: entries (and possibly a snapshot) not yet persisted.

Contract:
- ``entries[i]`` has index ``offset + i``. ``offset`` may be below the storage's last index:
  a new leader's entries can replace a suffix that was already persisted.
- If ``snapshot`` is set, it precedes ``entries`` (``offset == snapshot.index + 1``).
- The caller persists what ``RawNode.ready`` hands out, then ``stable_to``/``stable_snap_to``
  drop it from here. Nothing here touches storage.
"""

from __future__ import annotations

from kvcluster.raft.types import Entry, Snapshot

__all__ = ["Unstable"]


class Unstable:
    __slots__ = ("entries", "offset", "snapshot")

    def __init__(self, offset: int) -> None:
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.offset = offset

    def maybe_first_index(self) -> int | None:
        if self.snapshot is not None:
            return self.snapshot.metadata.index + 1
        return None

    def maybe_last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.metadata.index
        return None

    def maybe_term(self, i: int) -> int | None:
        if i < self.offset:
            snap = self.snapshot
            if snap is not None and snap.metadata.index == i:
                return snap.metadata.term
            return None
        last = self.maybe_last_index()
        if last is None or i > last:
            return None
        return self.entries[i - self.offset].term

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to ``index`` (of ``term``) were persisted; forget them if still ours."""
        t = self.maybe_term(index)
        if t is None or t != term or index < self.offset:
            # The entry was replaced by a newer leader's (or is the snapshot): keep it.
            return
        del self.entries[: index + 1 - self.offset]
        self.offset = index + 1

    def stable_snap_to(self, index: int) -> None:
        if self.snapshot is not None and self.snapshot.metadata.index == index:
            self.snapshot = None

    def restore(self, snap: Snapshot) -> None:
        self.offset = snap.metadata.index + 1
        self.entries = []
        self.snapshot = snap

    def truncate_and_append(self, ents: list[Entry]) -> None:
        after = ents[0].index
        if after == self.offset + len(self.entries):
            self.entries.extend(ents)
        elif after <= self.offset:
            # Replace everything unstable (and a persisted suffix, which storage truncates).
            self.offset = after
            self.entries = list(ents)
        else:
            del self.entries[after - self.offset :]
            self.entries.extend(ents)

    def slice(self, lo: int, hi: int) -> list[Entry]:
        return self.entries[lo - self.offset : hi - self.offset]
