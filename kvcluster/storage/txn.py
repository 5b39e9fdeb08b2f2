"""Transactions over the node store: every read and write of LMDB goes through here.

Contract:
- ``ReadTxn`` is one LMDB read transaction: a consistent view of every group at one moment.
  ``WriteTxn`` is the one write transaction of the node (LMDB has a single writer); it is a
  context manager that commits on a clean exit and aborts on an exception.
- All-or-nothing: a ``WriteTxn`` that fails (an exception in the body, ``StorageFull`` from
  LMDB, a refused Raft log operation) leaves LMDB *and* the in-memory group caches exactly as
  they were. Mutators work on a copy of each touched group's ``GroupState``; the copies are
  installed only after LMDB's commit returned.
- Durability: with the store's default ``sync=True`` a commit returns after LMDB flushed it;
  that is the "persist" of persist-before-send.
- Raft log operations keep ``MemoryStorage``'s semantics and errors exactly (``append``
  truncates a conflicting suffix, ``compact`` keeps a dummy entry at the compaction point,
  ``apply_snapshot`` refuses a snapshot that is not newer, ...). The one deviation:
  ``create_snapshot`` below the compaction point raises ``Compacted`` where MemoryStorage
  would index its list with a negative offset.
- State-machine writes (``kv_view``, ``kv_put``/``kv_delete``/``delete_slot``) and
  ``set_applied`` in the same ``WriteTxn`` are atomic: after a crash an entry is either
  applied and counted, or neither.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING

from kvcluster.errors import Compacted, InvalidArgument, Unavailable
from kvcluster.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMetadata
from kvcluster.storage import _lmdb, codec, snapshots
from kvcluster.storage.batch import WriteBatch
from kvcluster.storage.codec import MetaTag
from kvcluster.storage.errors import GroupExists, NodeStoreError, StorageFull, UnknownGroup
from kvcluster.storage.kv_view import GroupKvReadView, GroupKvView
from kvcluster.storage.state import GroupState, TermRuns

if TYPE_CHECKING:
    from kvcluster.storage.node_store import NodeStore

__all__ = ["ReadTxn", "WriteTxn"]


class ReadTxn:
    """A consistent read view of the whole store (a context manager; closes on exit)."""

    __slots__ = ("_store", "_txn")

    def __init__(self, store: NodeStore, txn: _lmdb.Txn) -> None:
        self._store = store
        self._txn = txn

    def __enter__(self) -> ReadTxn:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._txn.abort()

    # -- the state machine's reads ---------------------------------------------------------
    def kv_read_view(self, group: int) -> GroupKvReadView:
        """Group ``group``'s data and meta records as a ``KvReadView`` of this transaction."""
        self._require_group(group)
        return GroupKvReadView(self._txn, self._store._kv, group, self._store.max_user_key_size)

    def kv_get(self, group: int, slot: int, key: bytes) -> bytes | None:
        """The value stored under ``key`` in ``slot`` of ``group``, or None."""
        self._require_group(group)
        return self._txn.get(self._kv_key(group, slot, key), db=self._store._kv)

    def scan_slot(
        self, group: int, slot: int, start_after: bytes | None = None, limit: int | None = None
    ) -> list[tuple[bytes, bytes]]:
        """``(key, value)`` pairs of one slot in key order: keys > ``start_after`` (all if
        None), at most ``limit`` of them (all if None). Page with the last key returned."""
        if start_after is not None and len(start_after) > self._store.max_user_key_size:
            raise InvalidArgument(f"start_after of {len(start_after)} bytes is longer than a key")
        view = self.kv_read_view(group)
        return view.scan(slot, start_after, (1 << 62) if limit is None else limit)

    def count_slot(self, group: int, slot: int) -> int:
        """How many keys ``slot`` of ``group`` holds (a key scan: O(keys in the slot))."""
        self._require_group(group)
        prefix = self._slot_prefix(group, slot)
        cur = self._txn.cursor(db=self._store._kv)
        if not cur.set_range(prefix):
            return 0
        n = len(prefix)
        count = 0
        for raw in cur.iternext(keys=True, values=False):
            if raw[:n] != prefix:
                break
            count += 1
        return count

    def iter_group_kv(
        self, group: int, after: tuple[int, bytes] | None = None
    ) -> Iterator[tuple[int, bytes, bytes]]:
        """Every ``(slot, key, value)`` of ``group`` in slot and key order (lazy), the state
        machine's meta records (slot ``codec.SM_META_SLOT``) last; with ``after``, only the
        records after that ``(slot, key)``."""
        self._require_group(group)
        prefix = codec.group_prefix(group)
        cur = self._txn.cursor(db=self._store._kv)
        start = prefix if after is None else codec.kv_key(group, after[0], after[1])
        if not cur.set_range(start):
            return
        if after is not None and cur.key() == start and not cur.next():
            return
        for raw, value in cur.iternext():
            if raw[:4] != prefix:
                return
            slot, key = codec.split_kv_key(raw)
            yield slot, key, value

    def applied_index(self, group: int) -> int:
        """The group's applied index as of this transaction."""
        self._require_group(group)
        raw = self._txn.get(codec.meta_key(group, MetaTag.APPLIED), db=self._store._meta)
        return 0 if raw is None else codec.decode_applied(raw)

    # -- helpers ---------------------------------------------------------------------------
    def _kv_key(self, group: int, slot: int, key: bytes) -> bytes:
        if not 0 <= slot <= codec.DATA_SLOT_MAX:
            raise InvalidArgument(f"slot {slot} out of range 0..{codec.DATA_SLOT_MAX}")
        if len(key) > self._store.max_user_key_size:
            raise InvalidArgument(
                f"key of {len(key)} bytes exceeds {self._store.max_user_key_size} bytes"
            )
        return codec.kv_key(group, slot, key)

    def _require_group(self, group: int) -> None:
        if group in self._store._groups:
            return
        if not 0 <= group <= codec.GROUP_MAX:
            raise InvalidArgument(f"group id {group} out of range 0..{codec.GROUP_MAX}")
        if self._txn.get(codec.meta_key(group, MetaTag.GROUP), db=self._store._meta) is None:
            raise UnknownGroup(group)

    def _slot_prefix(self, group: int, slot: int) -> bytes:
        if not 0 <= slot <= codec.DATA_SLOT_MAX:
            raise InvalidArgument(f"slot {slot} out of range 0..{codec.DATA_SLOT_MAX}")
        return codec.slot_prefix(group, slot)

    def _load(self, group: int) -> GroupState | None:
        """Read one group's state from this transaction (None if the group is absent)."""
        if not 0 <= group <= codec.GROUP_MAX:
            raise InvalidArgument(f"group id {group} out of range 0..{codec.GROUP_MAX}")
        txn, meta = self._txn, self._store._meta
        flags = txn.get(codec.meta_key(group, MetaTag.GROUP), db=meta)
        if flags is None:
            return None
        raw = txn.get(codec.meta_key(group, MetaTag.HARD_STATE), db=meta)
        hs = HardState() if raw is None else codec.decode_hard_state(raw)
        raw = txn.get(codec.meta_key(group, MetaTag.CONF_STATE), db=meta)
        conf_index, conf = (0, ConfState()) if raw is None else codec.decode_conf_record(raw)
        raw = txn.get(codec.meta_key(group, MetaTag.SNAPSHOT), db=meta)
        snap = (
            codec.SnapshotRecord(0, 0, conf, 0, 0)
            if raw is None
            else codec.decode_snapshot_record(raw)
        )
        raw = txn.get(codec.meta_key(group, MetaTag.LOG_OFFSET), db=meta)
        offset, offset_term = (0, 0) if raw is None else codec.decode_log_offset(raw)
        raw = txn.get(codec.meta_key(group, MetaTag.APPLIED), db=meta)
        applied = 0 if raw is None else codec.decode_applied(raw)

        runs = TermRuns(offset, offset_term)
        last = offset
        cur = txn.cursor(db=self._store._log)
        if cur.set_range(codec.log_key(group, offset + 1)):
            for key, value in cur.iternext():
                if codec.group_of(key) != group:
                    break
                index = codec.log_index_of(key)
                if index != last + 1:
                    raise NodeStoreError(
                        f"raft log of group {group} is corrupt: index {index} after {last}"
                    )
                runs.push(index, codec.entry_term(value))
                last = index
        return GroupState(
            hard_state=hs,
            conf_index=conf_index,
            conf_state=conf,
            snapshot_index=snap.index,
            snapshot_term=snap.term,
            snapshot_conf=snap.conf_state,
            snapshot_chunks=snap.chunks,
            snapshot_size=snap.size,
            offset=offset,
            runs=runs,
            last_index=last,
            applied=applied,
            opaque=codec.decode_group_flags(flags),
            cache=self._store._new_cache(),
        )


class WriteTxn(ReadTxn):
    """The store's write transaction. Use as ``with store.write() as txn: ...``."""

    __slots__ = ("_done", "_failed", "_staged")

    def __init__(self, store: NodeStore, txn: _lmdb.Txn) -> None:
        super().__init__(store, txn)
        self._staged: dict[int, GroupState | None] = {}  # None: dropped in this transaction
        self._done = False
        self._failed = False  # LMDB refused a write: the transaction can only be aborted

    def __enter__(self) -> WriteTxn:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if et is None:
            self.commit()
            return
        self.abort()
        if isinstance(e, _lmdb.MapFullError):  # from a call that does not convert it itself
            raise StorageFull(self._store.map_size) from e

    def commit(self) -> None:
        """Commit (durably, with ``sync=True``) and install the new group states."""
        if self._done:
            return
        self._done = True
        if self._failed:
            self._txn.abort()
            self._store._end_write(None)
            raise StorageFull(self._store.map_size)
        try:
            self._txn.commit()
        except _lmdb.MapFullError as e:
            self._txn.abort()
            self._store._end_write(None)
            raise StorageFull(self._store.map_size) from e
        except BaseException:
            self._txn.abort()
            self._store._end_write(None)
            raise
        self._store._end_write(self._staged)

    def abort(self) -> None:
        """Roll back: nothing of this transaction reaches LMDB or the caches."""
        if self._done:
            return
        self._done = True
        self._txn.abort()
        self._store._end_write(None)

    # -- groups ----------------------------------------------------------------------------
    def create_group(
        self, group: int, conf_state: ConfState | None = None, *, opaque_snapshots: bool = False
    ) -> None:
        """Start storing ``group``: empty log, no snapshot, membership ``conf_state``.

        By default the group's state machine lives in the kv space and its snapshots are
        captured from it. ``opaque_snapshots=True`` is for a state machine kept elsewhere:
        its snapshot data is supplied to ``create_snapshot`` and stored verbatim (this is
        also MemoryStorage's behaviour).
        """
        if self._state_or_none(group) is not None:
            raise GroupExists(group)
        cs = conf_state or ConfState()
        cs = ConfState(tuple(cs.voters), tuple(cs.learners))
        txn, meta = self._txn, self._store._meta
        self._put(
            txn,
            codec.meta_key(group, MetaTag.GROUP),
            codec.encode_group_flags(opaque_snapshots),
            meta,
        )
        self._put(
            txn, codec.meta_key(group, MetaTag.CONF_STATE), codec.encode_conf_record(0, cs), meta
        )
        self._put(
            txn,
            codec.meta_key(group, MetaTag.SNAPSHOT),
            codec.encode_snapshot_record(codec.SnapshotRecord(0, 0, cs, 0, 0)),
            meta,
        )
        self._staged[group] = GroupState(
            hard_state=HardState(),
            conf_index=0,
            conf_state=cs,
            snapshot_index=0,
            snapshot_term=0,
            snapshot_conf=cs,
            snapshot_chunks=0,
            snapshot_size=0,
            offset=0,
            runs=TermRuns(0, 0),
            last_index=0,
            applied=0,
            opaque=opaque_snapshots,
            cache=self._store._new_cache(),
        )

    def drop_group(self, group: int) -> None:
        """Delete everything stored for ``group`` (its replica left this node)."""
        self._state(group)
        prefix = codec.group_prefix(group)
        s = self._store
        for db in (s._meta, s._log, s._kv, s._snap):
            self._delete_prefix(db, prefix)
        self._staged[group] = None

    # -- the state machine's writes --------------------------------------------------------
    def kv_view(self, group: int) -> GroupKvView:
        """Group ``group``'s data and meta records as a ``KvView`` writing in this transaction."""
        self._require_group(group)
        return GroupKvView(self, self._txn, self._store._kv, group, self._store.max_user_key_size)

    def kv_put(self, group: int, slot: int, key: bytes, value: bytes) -> None:
        self._require_group(group)
        self._put(self._txn, self._kv_key(group, slot, key), value, self._store._kv)

    def kv_delete(self, group: int, slot: int, key: bytes) -> bool:
        """Delete one key; whether it existed."""
        self._require_group(group)
        return self._delete(self._kv_key(group, slot, key), self._store._kv)

    def delete_slot(self, group: int, slot: int) -> int:
        """Delete every key of ``slot`` (a migrated-away slot); how many there were."""
        self._require_group(group)
        return self._delete_prefix(self._store._kv, self._slot_prefix(group, slot))

    def set_applied(self, group: int, index: int) -> None:
        """Record that the state machine has applied every entry up to ``index``."""
        st = self._state(group)
        if index < st.applied:
            raise InvalidArgument(
                f"applied index of group {group} cannot go back from {st.applied} to {index}"
            )
        self._put_meta(group, MetaTag.APPLIED, codec.encode_applied(index))
        st.applied = index

    def set_conf_state(self, group: int, index: int, conf_state: ConfState) -> None:
        """Record the membership that took effect when entry ``index`` was applied."""
        st = self._state(group)
        cs = ConfState(tuple(conf_state.voters), tuple(conf_state.learners))
        self._put_meta(group, MetaTag.CONF_STATE, codec.encode_conf_record(index, cs))
        st.conf_index, st.conf_state = index, cs

    # -- the Raft log ----------------------------------------------------------------------
    def persist(self, batch: WriteBatch) -> None:
        """Write every group of ``batch``: snapshot, then entries, then hard state."""
        for w in batch:
            if w.snapshot is not None and not w.snapshot.is_empty():
                self.apply_snapshot(w.group, w.snapshot)
            if w.entries:
                self.append(w.group, w.entries)
            if w.hard_state is not None:
                self.set_hard_state(w.group, w.hard_state)

    def set_hard_state(self, group: int, hs: HardState) -> None:
        st = self._state(group)
        self._put_meta(group, MetaTag.HARD_STATE, codec.encode_hard_state(hs))
        st.hard_state = HardState(hs.term, hs.vote, hs.commit)

    def append(self, group: int, entries: list[Entry]) -> None:
        """Append contiguous ``entries``, truncating any conflicting suffix first.

        Entries at or below the compaction point are skipped; a gap after the last index
        raises Unavailable (as MemoryStorage.append).
        """
        st = self._state(group)
        if not entries:
            return
        first = st.offset + 1
        last = entries[0].index + len(entries) - 1
        if last < first:
            return  # all of them are already compacted
        if first > entries[0].index:
            entries = entries[first - entries[0].index :]
        start = entries[0].index
        if start > st.last_index + 1:
            raise Unavailable(
                f"missing log entries: last index {st.last_index}, appending at {start}"
            )
        txn, log = self._txn, self._store._log
        if start <= st.last_index:
            end = codec.log_key(group, st.last_index)
            self._delete_range(log, codec.log_key(group, start), lambda key: key <= end)
            st.runs.truncate_after(start - 1)
        cur = txn.cursor(db=log)
        try:
            cur.putmulti([(codec.log_key(group, e.index), codec.encode_entry(e)) for e in entries])
        except _lmdb.MapFullError as exc:
            self._failed = True
            raise StorageFull(self._store.map_size) from exc
        push = st.runs.push
        for e in entries:
            push(e.index, e.term)
        st.last_index = entries[-1].index
        st.cache.append(entries)

    def compact(self, group: int, compact_index: int) -> None:
        """Drop entries up to ``compact_index``, which becomes the dummy entry. A kv group's
        log is never cut past its applied index (its snapshot is its applied data)."""
        st = self._state(group)
        if compact_index <= st.offset:
            raise Compacted(f"already compacted up to {st.offset}")
        if compact_index > st.last_index:
            raise Unavailable(f"compact {compact_index} > last index {st.last_index}")
        if not st.opaque and compact_index > st.applied:
            raise Unavailable(
                f"compact {compact_index} > applied index {st.applied} of kv group {group}"
            )
        term = st.runs.term(compact_index)
        end = codec.log_key(group, compact_index)
        self._delete_range(
            self._store._log, codec.log_key(group, st.offset + 1), lambda key: key <= end
        )
        self._put_meta(group, MetaTag.LOG_OFFSET, codec.encode_log_offset(compact_index, term))
        st.runs.compact(compact_index)
        st.cache.compact(compact_index)
        st.offset = compact_index

    def create_snapshot(
        self, group: int, index: int, conf_state: ConfState, data: bytes | None = None
    ) -> SnapshotMetadata:
        """Store an opaque group's snapshot ``data`` as of ``index`` (does not compact the
        log; MemoryStorage's signature). A kv group refuses with InvalidArgument: its
        snapshot is captured when one is needed (``GroupStorage.snapshot()``)."""
        return snapshots.create(self, group, self._state(group), index, conf_state, data)

    def apply_snapshot(self, group: int, snap: Snapshot) -> None:
        """Install a leader's snapshot: replaces the log and (kv group) the kv data.
        Refused with SnapshotOutOfDate unless it is newer than what the group holds (a kv
        group: its applied index; an opaque group: its stored snapshot)."""
        chunks = snapshots.slices(snap.data, self._store.chunk_size)
        snapshots.install(self, group, self._state(group), snap.metadata, chunks)

    def install_snapshot(
        self, group: int, metadata: SnapshotMetadata, chunks: Iterable[bytes]
    ) -> None:
        """``apply_snapshot`` with the data given as chunks (streamed, never all in memory).

        A kv group's data must be kv form; it replaces all kv data of the group
        (CorruptSnapshot, rolling the whole transaction back, if it does not decode). An
        opaque group stores the data verbatim. Either way the log restarts after
        ``metadata.index``, and the applied index and membership become the snapshot's.
        """
        snapshots.install(self, group, self._state(group), metadata, chunks)

    # -- helpers ---------------------------------------------------------------------------
    def _state(self, group: int) -> GroupState:
        st = self._state_or_none(group)
        if st is None:
            raise UnknownGroup(group)
        return st

    def _state_or_none(self, group: int) -> GroupState | None:
        """The group's state as this transaction sees it (copied on first touch)."""
        if group in self._staged:
            return self._staged[group]
        handle = self._store._groups.get(group)
        st = handle._state if handle is not None else self._load(group)
        if st is None:
            return None
        st = st.copy() if handle is not None else st
        self._staged[group] = st
        return st

    def _require_group(self, group: int) -> None:
        if group in self._staged:
            if self._staged[group] is None:
                raise UnknownGroup(group)
            return
        super()._require_group(group)

    def _put_meta(self, group: int, tag: MetaTag, value: bytes) -> None:
        self._put(self._txn, codec.meta_key(group, tag), value, self._store._meta)

    def _put(self, txn: _lmdb.Txn, key: bytes, value: bytes, db: _lmdb.Database) -> None:
        try:
            txn.put(key, value, db=db)
        except _lmdb.MapFullError as e:
            self._failed = True
            raise StorageFull(self._store.map_size) from e

    def _delete(self, key: bytes, db: _lmdb.Database) -> bool:
        try:
            return self._txn.delete(key, db=db)
        except _lmdb.MapFullError as e:  # a delete may need to copy pages too
            self._failed = True
            raise StorageFull(self._store.map_size) from e

    def _delete_prefix(self, db: _lmdb.Database, prefix: bytes) -> int:
        """Delete every key starting with ``prefix``; how many there were."""
        return self._delete_range(db, prefix, lambda key: key[: len(prefix)] == prefix)

    def _delete_range(
        self, db: _lmdb.Database, start: bytes, within: Callable[[bytes], bool]
    ) -> int:
        """Delete keys from ``start`` on while ``within(key)``; how many."""
        cur = self._txn.cursor(db=db)
        n = 0
        try:
            if not cur.set_range(start):
                return 0
            key = cur.key()
            while key and within(key):  # b"": the cursor ran off the end
                cur.delete()  # and moves to the next key
                n += 1
                key = cur.key()
        except _lmdb.MapFullError as e:  # deleting copies pages too
            self._failed = True
            raise StorageFull(self._store.map_size) from e
        return n
