"""The one exception tree of kvcluster.

Every error a caller can see is a ``KvClusterError``. Redirects carry parsed fields and are
siblings — none subclasses another — so the order of ``except`` clauses is never
load-bearing (unlike redis-py's ``MovedError(AskError)``).

    KvClusterError
    ├── InvalidArgument                bad input at an edge; nothing changed (also ValueError)
    ├── WrongType                      the value is not of the kind the command needs
    ├── Redirect                       ask somewhere else (the client follows these itself)
    │   ├── Moved                      .slot .address .epoch: the slot lives elsewhere
    │   ├── Ask                        .slot .address: this one request goes elsewhere
    │   └── LeaderRedirect             .leader_id .address: this replica is not the leader
    ├── TryAgain                       .slot: frozen by a migration cutover; retry shortly
    ├── ClusterDown                    some slot has no owner, or no quorum is reachable
    ├── ServiceUnavailable             refused without effect (e.g. storage full)
    ├── OutcomeUnknown                 may or may not have happened (timeout, lost connection)
    ├── RetryBudgetExhausted           .last_error: every retry has a budget; this one is spent
    ├── NodeStoreError                 the node's local store (LMDB) refused an operation
    │   ├── StorageFull                the map is full; the transaction was rolled back
    │   ├── IdentityMismatch           the data directory belongs to another cluster or node
    │   ├── StoreLocked                another process has the data directory open
    │   ├── IncompatibleFormat         the directory was written by another on-disk format
    │   ├── UnknownGroup               no Raft group with that id is stored on this node
    │   ├── GroupExists                create_group for a group that is already stored
    │   └── CorruptSnapshot            snapshot data that does not decode
    ├── TransportError                 the peer transport refused an operation
    │   └── CodecError                 bytes that are not one Raft message (also ValueError)
    ├── RaftError                      the consensus core refused something
    │   ├── ProposalDropped            not appended (no leader, transfer in progress, ...)
    │   │   └── NotLeader              this replica is not the leader; .leader_id if known
    │   ├── ConfChangePending          a membership change is already in flight
    │   └── StorageError               the Raft storage was asked for something it lacks
    │       ├── Compacted              the requested index was compacted away
    │       ├── Unavailable            the requested index is not in the log yet
    │       └── SnapshotOutOfDate      a newer snapshot is already present

Leaves defined beside the code that raises them, because only that code uses them:
``kvcluster.kv.commands.MalformedCommand`` (an InvalidArgument) and
``kvcluster.kv.view.CorruptKvState``.

This module imports nothing from the rest of the package: every layer may use it.
"""

from __future__ import annotations

__all__ = [
    "Ask",
    "ClusterDown",
    "CodecError",
    "Compacted",
    "ConfChangePending",
    "CorruptSnapshot",
    "GroupExists",
    "IdentityMismatch",
    "IncompatibleFormat",
    "InvalidArgument",
    "KvClusterError",
    "LeaderRedirect",
    "Moved",
    "NodeStoreError",
    "NotLeader",
    "OutcomeUnknown",
    "ProposalDropped",
    "RaftError",
    "Redirect",
    "RetryBudgetExhausted",
    "ServiceUnavailable",
    "SnapshotOutOfDate",
    "StorageError",
    "StorageFull",
    "StoreLocked",
    "TransportError",
    "TryAgain",
    "Unavailable",
    "UnknownGroup",
    "WrongType",
]


class KvClusterError(Exception):
    """The root of every error kvcluster raises on purpose."""


class InvalidArgument(KvClusterError, ValueError):
    """Bad input at an edge: the request was rejected whole and nothing changed."""


class WrongType(KvClusterError):
    """The command needs another kind of value (e.g. INCRBY on a non-integer)."""


class Redirect(KvClusterError):
    """The request must go to another node. Subclasses are siblings with parsed fields."""


class Moved(Redirect):
    """``MOVED slot address epoch``: the slot is owned by another group."""

    def __init__(self, slot: int, address: str, epoch: int) -> None:
        self.slot = slot
        self.address = address
        self.epoch = epoch
        super().__init__(f"MOVED {slot} {address} (epoch {epoch})")


class Ask(Redirect):
    """``ASK slot address``: send this one request to ``address`` (migration in progress)."""

    def __init__(self, slot: int, address: str) -> None:
        self.slot = slot
        self.address = address
        super().__init__(f"ASK {slot} {address}")


class LeaderRedirect(Redirect):
    """This replica is not the group's leader; ``address`` is the leader's if known ("")."""

    def __init__(self, leader_id: int, address: str) -> None:
        self.leader_id = leader_id
        self.address = address
        super().__init__(f"not leader; leader is {leader_id or 'unknown'} {address}".rstrip())


class TryAgain(KvClusterError):
    """The slot is frozen for a migration cutover; nothing happened; retry shortly."""

    def __init__(self, slot: int) -> None:
        self.slot = slot
        super().__init__(f"TRYAGAIN slot {slot} is being migrated")


class ClusterDown(KvClusterError):
    """The cluster cannot serve this request (slot unowned, no quorum reachable)."""


class ServiceUnavailable(KvClusterError):
    """Refused without effect (e.g. the node's storage is full): it did not happen."""


class OutcomeUnknown(KvClusterError):
    """The request may or may not have happened (timeout, connection lost after sending)."""


class RetryBudgetExhausted(KvClusterError):
    """Every retry has a budget; this request spent its own. ``last_error`` says why."""

    def __init__(self, attempts: int, last_error: BaseException | None) -> None:
        self.attempts = attempts
        self.last_error = last_error
        super().__init__(f"gave up after {attempts} attempts: {last_error!r}")


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


class TransportError(KvClusterError):
    """The peer transport refused an operation (misuse, such as starting it twice)."""


class CodecError(TransportError, ValueError):
    """Bytes that do not decode as one Raft message, or a message that cannot be encoded.

    A receiver skips and counts the offending payload; it never takes the node down.
    """
