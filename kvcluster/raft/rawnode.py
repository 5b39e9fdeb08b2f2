"""RawNode: the interface the runtime drives — feed input, collect a Ready, advance.

Contract (after etcd-io/raft rawnode.go):
- Input: ``tick()``, ``step(msg)`` for messages from peers, and the request methods
  (``propose``, ``read_index``, ``transfer_leader``, ...). Requests that cannot be accepted
  raise a typed error from ``kvcluster.errors`` and change nothing.
- Output: ``ready()`` hands out everything accumulated since the last ``advance`` as one
  ``Ready``; the caller persists, sends, applies (in the order ``Ready`` documents) and then
  calls ``advance(ready)``. No second ``ready()`` before that ``advance``.
- Proposals that arrive between two ``ready()`` calls leave as one AppendEntries per
  follower, and read requests share one heartbeat round: the runtime's batching.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from kvcluster.errors import ProposalDropped
from kvcluster.raft.confchange import ConfChange
from kvcluster.raft.progress import Progress
from kvcluster.raft.raft import Config, Raft
from kvcluster.raft.storage import Storage
from kvcluster.raft.types import (
    LOCAL_MESSAGES,
    NONE,
    RESPONSE_MESSAGES,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Ready,
    SoftState,
    StateRole,
)

__all__ = ["RawNode", "Status"]

MT = MessageType


@dataclass(slots=True, frozen=True)
class Status:
    id: int
    term: int
    vote: int
    commit: int
    applied: int
    last_index: int
    leader_id: int
    role: StateRole
    progress: dict[int, Progress]
    lead_transferee: int


class RawNode:
    def __init__(self, config: Config, storage: Storage, rng: random.Random) -> None:
        self.raft = Raft(config, storage, rng)
        self._prev_soft = self.raft.soft_state()
        self._prev_hard = self.raft.hard_state()
        self._in_flight = False  # a Ready was handed out and not yet advanced

    # -- input -----------------------------------------------------------------------------
    def tick(self) -> None:
        self.raft.tick()

    def campaign(self) -> None:
        self.raft.step(Message(MT.HUP, from_=self.raft.id))

    def propose(self, data: bytes) -> None:
        self.propose_entries([Entry(0, 0, EntryType.NORMAL, data)])

    def propose_many(self, datas: list[bytes]) -> None:
        """Propose several commands at once: one append, one message per follower."""
        self.propose_entries([Entry(0, 0, EntryType.NORMAL, d) for d in datas])

    def propose_entries(self, entries: list[Entry]) -> None:
        self.raft.step(Message(MT.PROP, from_=self.raft.id, entries=entries))

    def propose_conf_change(self, cc: ConfChange) -> None:
        self.propose_entries([Entry(0, 0, EntryType.CONF_CHANGE, cc.encode())])

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        return self.raft.apply_conf_change(cc)

    def step(self, m: Message) -> None:
        """Feed a message received from a peer."""
        if m.type in LOCAL_MESSAGES:
            raise ProposalDropped(f"{m.type.name} is a local message and cannot be stepped")
        if m.type in RESPONSE_MESSAGES and m.from_ not in self.raft.tracker.progress:
            return  # a response from a node that is not (or no longer) a member
        self.raft.step(m)

    def read_index(self, ctx: bytes) -> None:
        """Ask for a linearizable read point; a ``ReadState`` with ``ctx`` comes in a Ready."""
        self.raft.step(Message(MT.READ_INDEX, from_=NONE, context=ctx))

    def transfer_leader(self, transferee: int) -> None:
        self.raft.step(Message(MT.TRANSFER_LEADER, from_=transferee))

    def report_unreachable(self, node_id: int) -> None:
        self.raft.step(Message(MT.UNREACHABLE, from_=node_id))

    def report_snapshot(self, node_id: int, ok: bool) -> None:
        self.raft.step(Message(MT.SNAP_STATUS, from_=node_id, reject=not ok))

    # -- output ----------------------------------------------------------------------------
    def has_ready(self) -> bool:
        r = self.raft
        log = r.log
        if r.soft_state() != self._prev_soft:
            return True
        hs = r.hard_state()
        if hs != self._prev_hard:
            return True
        return bool(
            log.unstable.snapshot is not None
            or log.unstable.entries
            or r.msgs
            or r.read_states
            or r.read_only.unstamped
            or r.bcast_pending
            or log.has_next_committed_ents()
        )

    def ready(self) -> Ready:
        if self._in_flight:
            raise AssertionError("ready() called again before advance()")
        r = self.raft
        r.flush_appends()
        r.flush_reads()
        log = r.log
        rd = Ready(
            entries=list(log.unstable.entries),
            committed_entries=log.next_committed_ents(),
            messages=r.msgs,
            read_states=r.read_states,
            snapshot=log.unstable.snapshot,
        )
        r.msgs = []
        r.read_states = []
        soft = r.soft_state()
        if soft != self._prev_soft:
            rd.soft_state = soft
        hs = r.hard_state()
        if hs != self._prev_hard:
            rd.hard_state = hs
            prev = self._prev_hard
            rd.new_term_or_vote = hs.term != prev.term or hs.vote != prev.vote
        self._in_flight = True
        return rd

    def advance(self, rd: Ready) -> None:
        self._in_flight = False
        r = self.raft
        log = r.log
        if rd.soft_state is not None:
            self._prev_soft = rd.soft_state
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        if rd.snapshot is not None:
            log.stable_snap_to(rd.snapshot.metadata.index)
            log.applied = max(log.applied, rd.snapshot.metadata.index)
        if rd.committed_entries:
            log.applied_to(rd.committed_entries[-1].index)
        if rd.entries:
            last = rd.entries[-1]
            log.stable_to(last.index, last.term)
            if log.match_term(last.index, last.term):  # not overwritten meanwhile
                r.on_persisted(last.index)
        elif rd.snapshot is not None:
            r.on_persisted(rd.snapshot.metadata.index)

    # -- inspection ------------------------------------------------------------------------
    def status(self) -> Status:
        r = self.raft
        return Status(
            id=r.id,
            term=r.term,
            vote=r.vote,
            commit=r.log.committed,
            applied=r.log.applied,
            last_index=r.log.last_index(),
            leader_id=r.leader_id,
            role=r.role,
            progress=dict(r.tracker.progress) if r.role == StateRole.LEADER else {},
            lead_transferee=r.lead_transferee,
        )

    def hard_state(self) -> HardState:
        return self.raft.hard_state()

    def soft_state(self) -> SoftState:
        return self.raft.soft_state()
