"""Storage: the only package that touches LMDB.

One ``NodeStore`` (one LMDB environment) per node holds every hosted Raft group: its log,
hard state, membership, snapshot and applied index, and the group's kv data stored by slot.
``GroupStorage`` is the Raft ``Storage`` of one group; ``WriteBatch`` + ``persist_ready`` is
the group commit of a loop turn; ``NodeStore.write()`` is the transaction in which the state
machine applies entries and records its applied index atomically.
"""

from __future__ import annotations

from kvcluster.storage.batch import GroupWrite, WriteBatch
from kvcluster.storage.compaction import compaction_index, retained
from kvcluster.storage.errors import (
    CorruptSnapshot,
    GroupExists,
    IdentityMismatch,
    IncompatibleFormat,
    NodeStoreError,
    StorageFull,
    StoreLocked,
    UnknownGroup,
)
from kvcluster.storage.group import GroupStorage
from kvcluster.storage.kv_view import GroupKvReadView, GroupKvView
from kvcluster.storage.node_store import DEFAULT_MAP_SIZE, NodeStore
from kvcluster.storage.txn import ReadTxn, WriteTxn

__all__ = [
    "DEFAULT_MAP_SIZE",
    "CorruptSnapshot",
    "GroupExists",
    "GroupKvReadView",
    "GroupKvView",
    "GroupStorage",
    "GroupWrite",
    "IdentityMismatch",
    "IncompatibleFormat",
    "NodeStore",
    "NodeStoreError",
    "ReadTxn",
    "StorageFull",
    "StoreLocked",
    "UnknownGroup",
    "WriteBatch",
    "WriteTxn",
    "compaction_index",
    "retained",
]
