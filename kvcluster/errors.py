"""The one exception tree of kvcluster.

Every error a caller can see is a ``KvClusterError``. Redirects carry parsed fields and never
subclass each other, so the order of ``except`` clauses is never load-bearing.

    KvClusterError
    ├── RaftError                      the consensus core refused something
    │   ├── ProposalDropped            not appended (no leader, transfer in progress, ...)
    │   │   └── NotLeader              this replica is not the leader; .leader_id if known
    │   ├── ConfChangePending          a membership change is already in flight
    │   └── StorageError               the Raft storage was asked for something it lacks
    │       ├── Compacted              the requested index was compacted away
    │       ├── Unavailable            the requested index is not in the log yet
    │       └── SnapshotOutOfDate      a newer snapshot is already present
    └── InvalidArgument                bad input at an edge (wrong type, out of range, ...)

This module imports nothing from the rest of the package: every layer may use it.
"""

from __future__ import annotations

__all__ = [
    "Compacted",
    "ConfChangePending",
    "InvalidArgument",
    "KvClusterError",
    "NotLeader",
    "ProposalDropped",
    "RaftError",
    "SnapshotOutOfDate",
    "StorageError",
    "Unavailable",
]


class KvClusterError(Exception):
    """The root of every error kvcluster raises on purpose."""


class InvalidArgument(KvClusterError, ValueError):
    """Bad input at an edge: the request was rejected whole and nothing changed."""


class RaftError(KvClusterError):
    """The consensus core refused a request."""


class ProposalDropped(RaftError):
    """The proposal was not appended to the log; it certainly did not happen."""


class NotLeader(ProposalDropped):
    """This replica is not the leader. ``leader_id`` is the leader it knows of (0: none)."""

    def __init__(self, leader_id: int, message: str | None = None) -> None:
        self.leader_id = leader_id
        super().__init__(message or f"not leader (leader: {leader_id or 'unknown'})")


class ConfChangePending(RaftError):
    """A membership change is already in flight; propose the next one after it applies."""


class StorageError(RaftError):
    """The Raft log storage cannot answer the request."""


class Compacted(StorageError):
    """The requested index is at or below the compaction point."""


class Unavailable(StorageError):
    """The requested index is past the end of the log."""


class SnapshotOutOfDate(StorageError):
    """A snapshot at least as new as the one offered is already present."""
