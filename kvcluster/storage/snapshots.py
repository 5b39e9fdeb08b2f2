"""Snapshots of a group: capture, store, install and stream their data.

Contract:
- A kv group (the runtime's kind) has no stored snapshot: its snapshot is its kv data at its
  applied index, captured when one is needed (``capture``: a leader about to send one to a
  follower whose entries it has compacted). Index, term, membership and data are read in
  one LMDB read transaction, so they always agree, and the write path never copies the
  group's data: compacting its log only deletes entries. The data is the kv form of
  ``codec`` (every data and meta record of the group), built in memory by the capturing
  thread (the node's is a worker: ``snapshot_maker``).
- An opaque group's snapshot (MemoryStorage's model, for tests and tools) is the data given
  to ``create``, stored in ``snap`` in chunks of about ``NodeStore.chunk_size`` bytes until a
  newer one replaces it; ``stream`` reads one chunk per short read transaction, so a slow
  receiver pins no reader.
- Installing replaces, in the caller's one write transaction: the log (which restarts after
  the snapshot index), the applied index, the membership and, for a kv group, all of the
  group's kv records (for an opaque group, its stored snapshot). It is refused with
  SnapshotOutOfDate unless newer than what the group holds (a kv group: its applied index).
  Data that does not decode raises CorruptSnapshot and the whole transaction rolls back.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from kvcluster.errors import Compacted, InvalidArgument, SnapshotOutOfDate, Unavailable
from kvcluster.raft.types import ConfState, Snapshot, SnapshotMetadata
from kvcluster.storage import codec
from kvcluster.storage.codec import MetaTag
from kvcluster.storage.errors import NodeStoreError
from kvcluster.storage.state import GroupState, TermRuns

if TYPE_CHECKING:
    from kvcluster.storage.node_store import NodeStore
    from kvcluster.storage.txn import ReadTxn, WriteTxn

__all__ = [
    "capture",
    "capture_metadata",
    "create",
    "install",
    "read_data",
    "rechunk",
    "slices",
    "stream",
]


def create(
    w: WriteTxn,
    group: int,
    st: GroupState,
    index: int,
    conf_state: ConfState,
    data: bytes | None,
) -> SnapshotMetadata:
    """``WriteTxn.create_snapshot`` of an opaque group; ``st`` is its state in ``w``."""
    if not st.opaque:
        raise InvalidArgument(
            f"group {group} snapshots its kv data at its applied index when one is needed"
            " (GroupStorage.snapshot()); none is created"
        )
    if index <= st.snapshot_index:
        raise SnapshotOutOfDate(f"snapshot at {index} is not newer")
    if index > st.last_index:
        raise Unavailable(f"snapshot index {index} > last index {st.last_index}")
    if index < st.offset:
        raise Compacted(f"snapshot index {index} is below the compaction point {st.offset}")
    if data is None:
        raise InvalidArgument(f"group {group} has opaque snapshots: data is required")
    chunks = slices(data, w._store.chunk_size)
    md = SnapshotMetadata(index, st.runs.term(index), _copy_conf(conf_state))
    _store(w, group, st, md, chunks)
    if index >= st.conf_index:
        w.set_conf_state(group, index, md.conf_state)
    return md


def install(
    w: WriteTxn, group: int, st: GroupState, metadata: SnapshotMetadata, chunks: Iterable[bytes]
) -> None:
    """``WriteTxn.install_snapshot``; ``st`` is the group's state in ``w``."""
    held = st.snapshot_index if st.opaque else st.applied
    if metadata.index <= held:
        raise SnapshotOutOfDate(f"snapshot at {metadata.index} is not newer than {held}")
    md = SnapshotMetadata(metadata.index, metadata.term, _copy_conf(metadata.conf_state))
    if st.opaque:
        _store(w, group, st, md, rechunk(chunks, w._store.chunk_size))
    else:
        _replace_kv(w, group, chunks)
    w._delete_prefix(w._store._log, codec.group_prefix(group))
    w._put_meta(group, MetaTag.LOG_OFFSET, codec.encode_log_offset(md.index, md.term))
    w._put_meta(group, MetaTag.APPLIED, codec.encode_applied(md.index))
    w.set_conf_state(group, md.index, md.conf_state)
    st.offset = st.last_index = st.applied = md.index
    st.runs = TermRuns(md.index, md.term)
    st.cache.clear()


def stream(store: NodeStore, group: int) -> tuple[SnapshotMetadata, Iterator[bytes]]:
    """``NodeStore.snapshot_chunks``: the current snapshot's metadata and a lazy iterator of
    its data chunks; SnapshotOutOfDate from the iterator if it is replaced mid-stream. A kv
    group's snapshot is captured now, whole, and handed out in chunks."""
    st = store.group(group)._st()
    if not st.opaque:
        snap = capture(store, group)
        return snap.metadata, slices(snap.data, store.chunk_size)
    md = SnapshotMetadata(st.snapshot_index, st.snapshot_term, _copy_conf(st.snapshot_conf))
    expect = (st.snapshot_index, st.snapshot_chunks, st.snapshot_size)

    def chunks() -> Iterator[bytes]:
        for n in range(expect[1]):
            with store.read() as r:
                raw = r._txn.get(codec.meta_key(group, MetaTag.SNAPSHOT), db=store._meta)
                rec = None if raw is None else codec.decode_snapshot_record(raw)
                if rec is None or (rec.index, rec.chunks, rec.size) != expect:
                    raise SnapshotOutOfDate(
                        f"snapshot {expect[0]} of group {group} was replaced while being read"
                    )
                chunk = r._txn.get(codec.snap_chunk_key(group, n), db=store._snap)
            if chunk is None:
                raise NodeStoreError(f"snapshot chunk {n} of group {group} is missing")
            yield chunk

    return md, chunks()


def capture(store: NodeStore, group: int) -> Snapshot:
    """A kv group's snapshot: its kv data at its applied index, with that index's term and
    the membership in force there, all from one read transaction."""
    with store.read() as r:
        md = _applied_metadata(store, r, group)
        data = b"".join(codec.encode_kv_snapshot(r.iter_group_kv(group), 1 << 20))
    return Snapshot(md, data)


def capture_metadata(store: NodeStore, group: int) -> SnapshotMetadata:
    """What ``capture`` would return as metadata now, without reading the data."""
    with store.read() as r:
        return _applied_metadata(store, r, group)


def _applied_metadata(store: NodeStore, r: ReadTxn, group: int) -> SnapshotMetadata:
    txn, meta = r._txn, store._meta
    applied = r.applied_index(group)
    raw = txn.get(codec.meta_key(group, MetaTag.LOG_OFFSET), db=meta)
    offset, offset_term = (0, 0) if raw is None else codec.decode_log_offset(raw)
    raw = txn.get(codec.meta_key(group, MetaTag.CONF_STATE), db=meta)
    conf = ConfState() if raw is None else codec.decode_conf_record(raw)[1]
    if applied == offset:
        term = offset_term
    else:
        entry = txn.get(codec.log_key(group, applied), db=store._log)
        if applied < offset or entry is None:
            raise NodeStoreError(
                f"group {group}: applied entry {applied} is not in its log (offset {offset})"
            )
        term = codec.entry_term(entry)
    return SnapshotMetadata(applied, term, conf)


def read_data(store: NodeStore, group: int) -> bytes:
    """The whole data of an opaque group's current snapshot (one read transaction)."""
    prefix = codec.group_prefix(group)
    parts: list[bytes] = []
    with store.read() as r:
        cur = r._txn.cursor(db=store._snap)
        if cur.set_range(prefix):
            for key, value in cur.iternext():
                if key[:4] != prefix:
                    break
                parts.append(value)
    return b"".join(parts)


def slices(data: bytes, size: int) -> Iterator[bytes]:
    """``data`` in pieces of ``size`` bytes (nothing for empty data)."""
    view = memoryview(data)
    for i in range(0, len(data), size):
        yield bytes(view[i : i + size])


def rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """The same bytes in chunks of at least ``size`` (but the last)."""
    buf = bytearray()
    for chunk in chunks:
        if not buf and len(chunk) >= size:
            yield bytes(chunk)
            continue
        buf += chunk
        if len(buf) >= size:
            yield bytes(buf)
            buf.clear()
    if buf:
        yield bytes(buf)


def _replace_kv(w: WriteTxn, group: int, chunks: Iterable[bytes]) -> None:
    """Write the kv items of ``chunks`` in place of all of the group's records."""
    kv = w._store._kv
    w._delete_prefix(kv, codec.group_prefix(group))
    for slot, key, value in codec.decode_kv_snapshot(chunks):
        w._put(w._txn, codec.kv_key(group, slot, key), value, kv)


def _store(
    w: WriteTxn, group: int, st: GroupState, md: SnapshotMetadata, chunks: Iterable[bytes]
) -> None:
    """Replace the group's snapshot data with ``chunks`` and record ``md``."""
    snap_db = w._store._snap
    w._delete_prefix(snap_db, codec.group_prefix(group))
    n = size = 0
    for chunk in chunks:
        w._put(w._txn, codec.snap_chunk_key(group, n), chunk, snap_db)
        n += 1
        size += len(chunk)
    rec = codec.SnapshotRecord(md.index, md.term, md.conf_state, n, size)
    w._put_meta(group, MetaTag.SNAPSHOT, codec.encode_snapshot_record(rec))
    st.snapshot_index, st.snapshot_term, st.snapshot_conf = md.index, md.term, md.conf_state
    st.snapshot_chunks, st.snapshot_size = n, size


def _copy_conf(cs: ConfState) -> ConfState:
    return ConfState(tuple(cs.voters), tuple(cs.learners))
