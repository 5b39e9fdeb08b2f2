"""The data that flows in and out of the Raft core.

Contract:
- Plain values only: entries, messages, hard state, snapshots, read states, the Ready.
  Nothing here does I/O or knows about time; a transport or storage layer serialises these.
- Names follow the Raft paper and etcd-io/raft: ``term``, ``index``, ``commit``, ``log_term``.
- ``Entry`` is a NamedTuple (cheap to build on the hot path); the rest are slotted dataclasses.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

NONE = 0
"""The node id meaning "nobody" (no vote, no known leader). Real node ids are >= 1."""


class EntryType(enum.IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1


class Entry(NamedTuple):
    term: int
    # Shadows tuple.index on purpose: the spec's name wins over an unused tuple method.
    index: int  # type: ignore[assignment]
    type: EntryType = EntryType.NORMAL
    data: bytes = b""

    def size(self) -> int:
        return len(self.data) + 16


class MessageType(enum.IntEnum):
    # Local messages: never sent over the wire.
    HUP = 0  # start an election (or pre-election)
    BEAT = 1  # leader: broadcast heartbeats
    UNREACHABLE = 2  # the transport could not reach `from_`
    SNAP_STATUS = 3  # the application reports a snapshot send result (`reject` = failed)
    CHECK_QUORUM = 4  # leader: step down unless a quorum was recently active
    # Wire messages.
    PROP = 10
    APP = 11
    APP_RESP = 12
    VOTE = 13
    VOTE_RESP = 14
    PRE_VOTE = 15
    PRE_VOTE_RESP = 16
    SNAP = 17
    HEARTBEAT = 18
    HEARTBEAT_RESP = 19
    TRANSFER_LEADER = 20
    TIMEOUT_NOW = 21
    READ_INDEX = 22
    READ_INDEX_RESP = 23


LOCAL_MESSAGES = frozenset(
    {
        MessageType.HUP,
        MessageType.BEAT,
        MessageType.UNREACHABLE,
        MessageType.SNAP_STATUS,
        MessageType.CHECK_QUORUM,
    }
)
RESPONSE_MESSAGES = frozenset(
    {
        MessageType.APP_RESP,
        MessageType.VOTE_RESP,
        MessageType.PRE_VOTE_RESP,
        MessageType.HEARTBEAT_RESP,
        MessageType.UNREACHABLE,
    }
)


def vote_response_type(t: MessageType) -> MessageType:
    if t == MessageType.VOTE:
        return MessageType.VOTE_RESP
    if t == MessageType.PRE_VOTE:
        return MessageType.PRE_VOTE_RESP
    raise ValueError(f"not a vote message: {t!r}")


@dataclass(slots=True)
class ConfState:
    """The membership of a group: voters and learners (non-voting members)."""

    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()


@dataclass(slots=True)
class SnapshotMetadata:
    index: int = 0
    term: int = 0
    conf_state: ConfState = field(default_factory=ConfState)


@dataclass(slots=True)
class Snapshot:
    metadata: SnapshotMetadata = field(default_factory=SnapshotMetadata)
    data: bytes = b""

    def is_empty(self) -> bool:
        return self.metadata.index == 0


@dataclass(slots=True)
class Message:
    """One Raft message.

    Field use by type (``index``/``log_term`` follow etcd-io/raft):
    - APP: ``index``/``log_term`` = previous entry, ``entries``, ``commit``.
    - APP_RESP: ``index`` = last matching index (accept) or the rejected previous index
      (reject); on reject ``reject_hint`` = the follower's suggested next index and
      ``log_term`` = the term of the follower's conflicting entry (0 if its log is short).
    - VOTE/PRE_VOTE: ``index``/``log_term`` = the candidate's last entry; ``context`` =
      b"transfer" when leadership is being transferred (skips the lease check).
    - HEARTBEAT/HEARTBEAT_RESP: ``commit``; ``read_seq`` = the ReadIndex round they confirm.
    - READ_INDEX/READ_INDEX_RESP: ``context`` = the caller's request id; resp ``index``.
    - PROP: ``entries`` to append.
    """

    type: MessageType
    to: int = NONE
    from_: int = NONE
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: list[Entry] = field(default_factory=list)
    commit: int = 0
    snapshot: Snapshot | None = None
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""
    read_seq: int = 0


@dataclass(slots=True)
class HardState:
    """What must be durable before the Ready's messages are sent (term and vote before any;
    see ``Ready.may_send_before_persist``)."""

    term: int = 0
    vote: int = NONE
    commit: int = 0


class StateRole(enum.IntEnum):
    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2
    PRE_CANDIDATE = 3


@dataclass(slots=True, frozen=True)
class SoftState:
    """Volatile state worth reporting (not persisted)."""

    leader_id: int
    role: StateRole


@dataclass(slots=True, frozen=True)
class ReadState:
    """A linearizable read may be served once the state machine has applied ``index``."""

    index: int
    request_ctx: bytes


@dataclass(slots=True)
class Ready:
    """Work handed to the caller. The caller must, in this order:

    1. persist ``snapshot`` (if any), ``entries`` and ``hard_state`` (if any) durably;
    2. send ``messages`` (only after step 1: persist before send; or, when
       ``may_send_before_persist()``, while step 1 is in flight);
    3. apply ``committed_entries`` in order and serve ``read_states`` once applied;
    4. call ``RawNode.advance(ready)``.
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    read_states: list[ReadState] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None
    committed_entries: list[Entry] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    new_term_or_vote: bool = False  # hard_state changes term or vote: persist before any send

    def may_send_before_persist(self) -> bool:
        """Whether ``messages`` may go out while step 1 is in flight (Raft thesis 10.2.1):
        when they are all appends and heartbeats (a leader's) and this Ready changes neither
        term nor vote, so they say nothing that is not durable already except the new
        entries themselves and the commit index (volatile in Raft). The leader counts its
        own copy of the entries only at ``advance`` (``Raft.on_persisted``), so a commit
        still needs a durable majority."""
        return (
            self.snapshot is None
            and not self.new_term_or_vote
            and bool(self.messages)
            and all(m.type in _EARLY_TYPES for m in self.messages)
        )


_EARLY_TYPES = frozenset({MessageType.APP, MessageType.HEARTBEAT})
