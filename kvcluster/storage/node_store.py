"""The node's one LMDB environment: every Raft group it hosts, their logs and their kv data.

Contract:
- One ``NodeStore`` per node process and data directory. The environment lives in
  ``<data_dir>/lmdb``; ``<data_dir>/LOCK`` is held with an exclusive ``flock`` for the life of
  the store, so a second process (or a second ``NodeStore``) on the same directory gets
  ``StoreLocked`` instead of silently sharing the file.
- Sub-databases (layout in ``codec``): ``node`` (format version, identity), ``meta`` (per
  group: hard state, conf state, snapshot record, applied index, compaction point), ``log``,
  ``kv`` and ``snap`` (snapshot data chunks).
- Writes go through ``write()`` (one ``WriteTxn`` at a time); ``persist_ready`` is the group
  commit of the runtime's loop turn. Reads of the Raft log go through ``GroupStorage``
  handles (``group(id)``), whose caches this class installs after each commit.
- Durability choice: the environment is opened with LMDB's sync on (``sync=True``): every
  commit flushes data pages, then the meta page, before ``commit`` returns. The alternative,
  MDB_NOSYNC plus ``env.sync()`` after commit, was measured (scripts/bench_storage.py) and is
  not used: it orders nothing between data and meta pages, so a power loss between the two
  can leave a meta page pointing at unwritten data. The price is two flushes per commit
  instead of one (about twice the commit latency on a slow disk); group commit through
  ``persist_ready`` pays it once per loop turn for all groups.
- Not thread-safe: the caller serialises calls (one event loop, or one writer thread).
- A kv group's snapshot is captured when one is needed; an opaque group's is stored (see
  ``snapshots``). Given a ``snapshot_executor``, captures run there (``SnapshotMaker``) and
  ``GroupStorage.snapshot()`` raises Unavailable until one is ready; without one they run on
  the asking thread.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor
from pathlib import Path
from types import TracebackType

from kvcluster.errors import InvalidArgument
from kvcluster.raft.types import ConfState, Entry, Snapshot, SnapshotMetadata
from kvcluster.storage import _lmdb, codec, snapshots
from kvcluster.storage.batch import WriteBatch
from kvcluster.storage.codec import MetaTag
from kvcluster.storage.errors import (
    IdentityMismatch,
    IncompatibleFormat,
    StoreLocked,
    UnknownGroup,
)
from kvcluster.storage.group import GroupStorage
from kvcluster.storage.snapshot_maker import SnapshotMaker
from kvcluster.storage.state import EntryCache, GroupState
from kvcluster.storage.txn import ReadTxn, WriteTxn

__all__ = ["DEFAULT_MAP_SIZE", "ENV_DIRNAME", "LOCK_FILENAME", "NodeStore"]

DEFAULT_MAP_SIZE = 4 << 30
"""4 GiB of address space; the file grows only as data is written."""
ENV_DIRNAME = "lmdb"
LOCK_FILENAME = "LOCK"
_FORMAT_KEY = b"format"
_IDENTITY_KEY = b"identity"


class NodeStore:
    """All durable state of one node, in one LMDB environment under ``data_dir``."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        map_size: int = DEFAULT_MAP_SIZE,
        sync: bool = True,
        entry_cache_entries: int = 256,
        entry_cache_bytes: int = 1 << 20,
        chunk_size: int = 1 << 20,
        snapshot_executor: Executor | None = None,
    ) -> None:
        if chunk_size < 1 or entry_cache_entries < 0 or entry_cache_bytes < 0:
            raise InvalidArgument("chunk_size must be >= 1 and cache bounds >= 0")
        self.path = Path(data_dir)
        self.chunk_size = chunk_size
        self._cache_entries = entry_cache_entries
        self._cache_bytes = entry_cache_bytes
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.path / LOCK_FILENAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise StoreLocked(f"data directory {self.path} is in use by another store") from None
        try:
            env_dir = self.path / ENV_DIRNAME
            env_dir.mkdir(exist_ok=True)
            self._env = _lmdb.open_env(env_dir, map_size=map_size, max_dbs=8, sync=sync)
            self._node = self._env.open_db(b"node")
            self._meta = self._env.open_db(b"meta")
            self._log = self._env.open_db(b"log")
            self._kv = self._env.open_db(b"kv")
            self._snap = self._env.open_db(b"snap")
            self._check_format()
        except BaseException:
            if hasattr(self, "_env"):
                self._env.close()
            os.close(self._lock_fd)
            raise
        self.max_user_key_size = self._env.max_key_size() - codec.KEY_OVERHEAD
        self._groups: dict[int, GroupStorage] = {}
        self._writing = False
        self.snapshot_maker = (
            None if snapshot_executor is None else SnapshotMaker(self, snapshot_executor)
        )
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Close the environment and release the directory. Handles become unusable."""
        if self._closed:
            return
        self._closed = True
        if self.snapshot_maker is not None:
            self.snapshot_maker.close()  # no capture reads the environment once it is closed
        for handle in self._groups.values():
            handle._state = None
        self._groups.clear()
        self._env.close()
        os.close(self._lock_fd)

    def __enter__(self) -> NodeStore:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def map_size(self) -> int:
        return self._env.info()["map_size"]

    def sync(self) -> None:
        """Flush everything committed to disk (only needed when opened with ``sync=False``)."""
        self._env.sync(True)

    def resize(self, map_size: int) -> None:
        """Grow (or shrink) the map, e.g. after StorageFull. No transaction may be open."""
        if self._writing:
            raise RuntimeError("resize with a write transaction open")
        self._env.set_mapsize(map_size)

    # -- identity --------------------------------------------------------------------------
    def identity(self) -> tuple[str, int] | None:
        """``(cluster_id, node_id)`` this directory belongs to, or None if not yet bound."""
        with self.read() as r:
            raw = r._txn.get(_IDENTITY_KEY, db=self._node)
        return None if raw is None else codec.decode_identity(raw)

    def check_identity(self, cluster_id: str, node_id: int) -> None:
        """Bind a fresh directory to ``(cluster_id, node_id)``, or check it is bound to them.

        Raises IdentityMismatch (and changes nothing) if the directory belongs to another
        cluster or node: a node must never run on another node's Raft state.
        """
        if not isinstance(cluster_id, str) or not cluster_id:
            raise InvalidArgument(f"cluster id must be a non-empty string, not {cluster_id!r}")
        if not isinstance(node_id, int) or node_id < 1:
            raise InvalidArgument(f"node id must be an int >= 1, not {node_id!r}")
        with self.write() as w:
            raw = w._txn.get(_IDENTITY_KEY, db=self._node)
            if raw is None:
                w._put(
                    w._txn, _IDENTITY_KEY, codec.encode_identity(cluster_id, node_id), self._node
                )
                return
            found = codec.decode_identity(raw)
            if found != (cluster_id, node_id):
                raise IdentityMismatch(str(self.path), (cluster_id, node_id), found)

    # -- groups ----------------------------------------------------------------------------
    def groups(self) -> list[int]:
        """Ids of every group stored on this node, ascending."""
        out: list[int] = []
        with self.read() as r:
            cur = r._txn.cursor(db=self._meta)
            seek = codec.group_prefix(0)
            while cur.set_range(seek):
                key = cur.key()
                group = codec.group_of(key)
                if key[4] == MetaTag.GROUP:
                    out.append(group)
                if group == codec.GROUP_MAX:
                    break
                seek = codec.group_prefix(group + 1)
        return out

    def create_group(
        self, group: int, conf_state: ConfState | None = None, *, opaque_snapshots: bool = False
    ) -> GroupStorage:
        """Start storing a new group (GroupExists if it is already here); see
        ``WriteTxn.create_group`` for ``opaque_snapshots``."""
        with self.write() as w:
            w.create_group(group, conf_state, opaque_snapshots=opaque_snapshots)
        return self._groups[group]

    def group(self, group: int) -> GroupStorage:
        """The Raft storage of a stored group (UnknownGroup if absent)."""
        handle = self._groups.get(group)
        if handle is not None:
            return handle
        with self.read() as r:
            st = r._load(group)
        if st is None:
            raise UnknownGroup(group)
        handle = self._groups[group] = GroupStorage(self, group, st)
        return handle

    def drop_group(self, group: int) -> None:
        """Delete every record of the group (log, state, snapshot, kv data)."""
        with self.write() as w:
            w.drop_group(group)

    # -- transactions ----------------------------------------------------------------------
    def read(self) -> ReadTxn:
        """A consistent read view: ``with store.read() as r: r.kv_get(...)``."""
        return ReadTxn(self, self._env.begin(write=False, buffers=False))

    def write(self) -> WriteTxn:
        """The write transaction: ``with store.write() as w: ...`` commits on a clean exit."""
        if self._writing:
            raise RuntimeError("a write transaction is already open on this NodeStore")
        txn = self._env.begin(write=True, buffers=False)
        self._writing = True
        return WriteTxn(self, txn)

    def persist_ready(self, batch: WriteBatch) -> None:
        """Group commit: every group's snapshot, entries and hard state in one durable
        transaction. When this returns, the messages of those Readys may be sent."""
        if not batch:
            return
        with self.write() as w:
            w.persist(batch)

    # -- one-shot conveniences (each its own transaction) ----------------------------------
    def applied_index(self, group: int) -> int:
        return self.group(group).applied_index

    def kv_get(self, group: int, slot: int, key: bytes) -> bytes | None:
        with self.read() as r:
            return r.kv_get(group, slot, key)

    def scan_slot(
        self, group: int, slot: int, start_after: bytes | None = None, limit: int | None = None
    ) -> list[tuple[bytes, bytes]]:
        with self.read() as r:
            return r.scan_slot(group, slot, start_after, limit)

    def count_slot(self, group: int, slot: int) -> int:
        with self.read() as r:
            return r.count_slot(group, slot)

    def apply_snapshot(self, group: int, snap: Snapshot) -> None:
        with self.write() as w:
            w.apply_snapshot(group, snap)

    def install_snapshot(
        self, group: int, metadata: SnapshotMetadata, chunks: Iterable[bytes]
    ) -> None:
        with self.write() as w:
            w.install_snapshot(group, metadata, chunks)

    def compact(self, group: int, index: int) -> None:
        with self.write() as w:
            w.compact(group, index)

    def snapshot_chunks(self, group: int) -> tuple[SnapshotMetadata, Iterator[bytes]]:
        """The group's current snapshot as metadata and an iterator of data chunks.

        A kv group's is captured now. An opaque group's chunks are read each in its own short
        read transaction (no reader is pinned while the consumer sends); if a newer snapshot
        replaces it mid-stream, the iterator raises SnapshotOutOfDate.
        """
        return snapshots.stream(self, group)

    # -- internals used by GroupStorage and WriteTxn ---------------------------------------
    def _new_cache(self) -> EntryCache:
        return EntryCache(self._cache_entries, self._cache_bytes)

    def _end_write(self, staged: dict[int, GroupState | None] | None) -> None:
        self._writing = False
        if not staged:
            return
        for group, st in staged.items():
            handle = self._groups.get(group)
            if st is None:
                if self.snapshot_maker is not None:
                    self.snapshot_maker.forget(group)
                if handle is not None:
                    handle._state = None
                    del self._groups[group]
            elif handle is not None:
                handle._state = st
            else:
                self._groups[group] = GroupStorage(self, group, st)

    def _read_entries(self, group: int, lo: int, hi: int, max_size: int) -> list[Entry]:
        """Entries [lo, hi) from LMDB, the first always, then while within ``max_size``."""
        out: list[Entry] = []
        with self.read() as r:
            cur = r._txn.cursor(db=self._log)
            if not cur.set_key(codec.log_key(group, lo)):
                return out
            size = 0
            index = lo
            for value in cur.iternext(keys=False, values=True):
                entry = codec.decode_entry(index, value)
                size += entry.size()
                if out and size > max_size:
                    break
                out.append(entry)
                index += 1
                if index >= hi:
                    break
        return out

    def _check_format(self) -> None:
        txn = self._env.begin(write=True)
        try:
            raw = txn.get(_FORMAT_KEY, db=self._node)
            if raw is None:
                txn.put(_FORMAT_KEY, codec.encode_format(codec.FORMAT_VERSION), db=self._node)
            elif codec.decode_format(raw) != codec.FORMAT_VERSION:
                raise IncompatibleFormat(
                    f"{self.path} holds on-disk format {codec.decode_format(raw)}, "
                    f"this version reads format {codec.FORMAT_VERSION}"
                )
        except BaseException:
            txn.abort()
            raise
        txn.commit()
