"""``GroupStorage``: the Raft ``Storage`` of one group, over the node's shared environment.

Contract:
- Implements ``kvcluster.raft.storage.Storage`` and answers exactly as ``MemoryStorage``
  would after the same writes: same values, same ``Compacted``/``Unavailable`` errors.
- Hot-path reads never touch LMDB: hard state, membership, first/last index and every term
  come from the in-memory ``GroupState``; ``entries`` is served from the recent-entry cache
  when it can and reads LMDB only for older entries; ``snapshot`` reads LMDB (a kv group's
  is captured then, at its applied index: see ``snapshots``).
- The state shown is always what LMDB has committed: ``NodeStore`` swaps ``_state`` only
  after a successful commit. A handle of a dropped group (or a closed store) raises
  ``UnknownGroup``.
- The write methods (``append``, ``set_hard_state``, ...) are MemoryStorage-compatible
  one-transaction conveniences for tests and tools; the runtime batches its writes with
  ``NodeStore.persist_ready`` / ``NodeStore.write()`` instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kvcluster.errors import Compacted, Unavailable
from kvcluster.raft.storage import limit_size
from kvcluster.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMetadata
from kvcluster.storage import snapshots
from kvcluster.storage.errors import UnknownGroup
from kvcluster.storage.state import GroupState

if TYPE_CHECKING:
    from kvcluster.storage.node_store import NodeStore

__all__ = ["GroupStorage"]


class GroupStorage:
    """Raft log storage of group ``group``. Obtain from ``NodeStore.group`` / ``create_group``."""

    __slots__ = ("_state", "_store", "group")

    def __init__(self, store: NodeStore, group: int, state: GroupState) -> None:
        self._store = store
        self.group = group
        self._state: GroupState | None = state

    def _st(self) -> GroupState:
        st = self._state
        if st is None:
            raise UnknownGroup(self.group)
        return st

    # -- Storage protocol ------------------------------------------------------------------
    def initial_state(self) -> tuple[HardState, ConfState]:
        st = self._st()
        hs, cs = st.hard_state, st.conf_state
        return HardState(hs.term, hs.vote, hs.commit), ConfState(cs.voters, cs.learners)

    def entries(self, lo: int, hi: int, max_size: int) -> list[Entry]:
        st = self._st()
        if lo <= st.offset:
            raise Compacted(f"entry {lo} is compacted (first index {st.offset + 1})")
        if hi > st.last_index + 1:
            raise Unavailable(f"entries up to {hi - 1} requested; last index {st.last_index}")
        if lo >= hi:
            return []
        cache = st.cache
        cached_from = cache.first_index()
        if cached_from and lo >= cached_from:
            return limit_size(cache.slice(lo, hi), max_size)
        mid = cached_from if cached_from and cached_from < hi else hi
        ents = self._store._read_entries(self.group, lo, mid, max_size)
        if mid < hi and len(ents) == mid - lo:  # not cut by size: continue from the cache
            ents = limit_size(ents + cache.slice(mid, hi), max_size)
        return ents

    def term(self, index: int) -> int:
        st = self._st()
        if index < st.offset:
            raise Compacted(f"term of {index} is compacted (offset {st.offset})")
        if index > st.last_index:
            raise Unavailable(f"term of {index} requested; last index {st.last_index}")
        return st.runs.term(index)

    def first_index(self) -> int:
        return self._st().offset + 1

    def last_index(self) -> int:
        return self._st().last_index

    def snapshot(self) -> Snapshot:
        st = self._st()
        if not st.opaque:
            maker = self._store.snapshot_maker
            if maker is not None:
                return maker.get(self.group, st.offset)  # Unavailable while being made
            return snapshots.capture(self._store, self.group)
        cs = st.snapshot_conf
        md = SnapshotMetadata(
            st.snapshot_index, st.snapshot_term, ConfState(cs.voters, cs.learners)
        )
        data = snapshots.read_data(self._store, self.group) if st.snapshot_chunks else b""
        return Snapshot(md, data)

    # -- more state ------------------------------------------------------------------------
    @property
    def applied_index(self) -> int:
        """The last index whose effects the group's kv data holds (durably)."""
        return self._st().applied

    @property
    def hard_state(self) -> HardState:
        hs = self._st().hard_state
        return HardState(hs.term, hs.vote, hs.commit)

    def snapshot_metadata(self) -> SnapshotMetadata:
        """The current snapshot's metadata, without reading its data."""
        st = self._st()
        if not st.opaque:
            return snapshots.capture_metadata(self._store, self.group)
        cs = st.snapshot_conf
        return SnapshotMetadata(
            st.snapshot_index, st.snapshot_term, ConfState(cs.voters, cs.learners)
        )

    # -- MemoryStorage-compatible writes (one transaction each) ----------------------------
    def set_hard_state(self, hs: HardState) -> None:
        with self._store.write() as w:
            w.set_hard_state(self.group, hs)

    def append(self, entries: list[Entry]) -> None:
        with self._store.write() as w:
            w.append(self.group, entries)

    def apply_snapshot(self, snap: Snapshot) -> None:
        with self._store.write() as w:
            w.apply_snapshot(self.group, snap)

    def create_snapshot(
        self, index: int, conf_state: ConfState, data: bytes | None = None
    ) -> Snapshot:
        """As MemoryStorage.create_snapshot, for an opaque group (a kv group refuses with
        InvalidArgument: its snapshots are captured when needed)."""
        with self._store.write() as w:
            md = w.create_snapshot(self.group, index, conf_state, data)
        return Snapshot(md, data if data is not None else b"")

    def compact(self, compact_index: int) -> None:
        with self._store.write() as w:
            w.compact(self.group, compact_index)

    def __repr__(self) -> str:
        st = self._state
        if st is None:
            return f"GroupStorage(group={self.group}, dropped)"
        return (
            f"GroupStorage(group={self.group}, first={st.offset + 1}, last={st.last_index}, "
            f"applied={st.applied})"
        )
