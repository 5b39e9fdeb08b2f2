"""kvcluster.raft — a pure, deterministic Raft library (sans-I/O).

Drive a ``RawNode`` with ``tick()``, ``step()`` and requests; collect ``ready()``; persist,
send, apply; then ``advance()``. See ``rawnode.py`` for the contract and ``types.Ready`` for
the order the caller must keep. Nothing in this package does I/O, reads a clock or uses the
module-level ``random``: ``tests/raft/test_purity.py`` enforces it.
"""

from kvcluster.raft.confchange import ConfChange, ConfChangeType
from kvcluster.raft.progress import ProgressState
from kvcluster.raft.raft import Config
from kvcluster.raft.rawnode import RawNode, Status
from kvcluster.raft.storage import MemoryStorage, Storage
from kvcluster.raft.types import (
    NONE,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Ready,
    Snapshot,
    SnapshotMetadata,
    SoftState,
    StateRole,
)

__all__ = [
    "NONE",
    "ConfChange",
    "ConfChangeType",
    "ConfState",
    "Config",
    "Entry",
    "EntryType",
    "HardState",
    "MemoryStorage",
    "Message",
    "MessageType",
    "ProgressState",
    "RawNode",
    "ReadState",
    "Ready",
    "Snapshot",
    "SnapshotMetadata",
    "SoftState",
    "StateRole",
    "Status",
    "Storage",
]
