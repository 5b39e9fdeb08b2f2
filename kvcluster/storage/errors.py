"""Errors of the node's local store (LMDB) that are not Raft-log lookups.

Contract:
- Raft log lookups keep raising the errors of ``kvcluster.errors`` (``Compacted``,
  ``Unavailable``, ``SnapshotOutOfDate``) so ``GroupStorage`` and ``MemoryStorage`` are
  interchangeable. Everything else the store refuses is a ``NodeStoreError``.
- Each error says what happened to the data: a refused write changed nothing.
- These classes are meant to move into ``kvcluster/errors.py`` (which storage may not edit);
  until then they live here, under ``KvClusterError``:

      KvClusterError
      └── NodeStoreError                the node's local store refused an operation
          ├── StorageFull               the LMDB map is full; the transaction was rolled back
          ├── IdentityMismatch          the data directory belongs to another cluster or node
          ├── StoreLocked               another process (or NodeStore) has the directory open
          ├── IncompatibleFormat        the directory was written by another on-disk format
          ├── UnknownGroup              no Raft group with that id is stored on this node
          ├── GroupExists               create_group for a group that is already stored
          └── CorruptSnapshot           snapshot data that does not decode as a kv snapshot
"""

from __future__ import annotations

from kvcluster.errors import KvClusterError

__all__ = [
    "CorruptSnapshot",
    "GroupExists",
    "IdentityMismatch",
    "IncompatibleFormat",
    "NodeStoreError",
    "StorageFull",
    "StoreLocked",
    "UnknownGroup",
]


class NodeStoreError(KvClusterError):
    """The node's local store refused an operation."""


class StorageFull(NodeStoreError):
    """The LMDB map (``map_size``) is full. The write transaction was aborted whole: nothing
    of it is stored, the store stays readable, and smaller writes may still succeed. Grow the
    map with ``NodeStore.resize`` or free space (compaction, dropping groups)."""

    def __init__(self, map_size: int) -> None:
        self.map_size = map_size
        super().__init__(
            f"storage full: the LMDB map of {map_size} bytes has no room for this write "
            "(transaction rolled back; raise map_size)"
        )


class IdentityMismatch(NodeStoreError):
    """The data directory was initialised for another cluster or node id."""

    def __init__(self, path: str, expected: tuple[str, int], found: tuple[str, int]) -> None:
        self.path = path
        self.expected_cluster_id, self.expected_node_id = expected
        self.found_cluster_id, self.found_node_id = found
        super().__init__(
            f"data directory {path} belongs to cluster {found[0]!r} node {found[1]}, "
            f"not cluster {expected[0]!r} node {expected[1]}"
        )


class StoreLocked(NodeStoreError):
    """The data directory is already open (another node process, or another NodeStore)."""


class IncompatibleFormat(NodeStoreError):
    """The data directory holds an on-disk format this version cannot read."""


class UnknownGroup(NodeStoreError, KeyError):
    """No Raft group with this id is stored on this node."""

    def __init__(self, group: int) -> None:
        self.group = group
        super().__init__(f"no raft group {group} on this node")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class GroupExists(NodeStoreError):
    """``create_group`` for a group id that is already stored."""

    def __init__(self, group: int) -> None:
        self.group = group
        super().__init__(f"raft group {group} already exists on this node")


class CorruptSnapshot(NodeStoreError):
    """Snapshot data that does not decode as a kv snapshot; nothing was installed."""
