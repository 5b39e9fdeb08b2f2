"""The Raft state machine of one replica: roles, elections, replication, commit, reads.

Contract:
- Pure and deterministic: input arrives as ``step(message)`` and ``tick()``; output leaves as
  ``msgs`` and ``read_states`` and through ``log``, collected by ``RawNode``. No I/O, no clock,
  randomness only from the injected ``random.Random``.
- Role dispatch lives in one place: ``become_*`` swap ``self._step_role`` and ``self._tick``
  (etcd-io/raft's ``r.step``); the role handlers never test the role again.
- Terms: every message with a higher term is handled in ``step`` before any role handler
  (followers adopt it, a lease can make us ignore a disruptive vote request); lower-term
  messages are dropped there too.
- Safety rules kept here: vote once per term and only for an up-to-date log; commit by
  counting only entries of the current term; never truncate committed entries (``log``);
  the leader counts its own log only up to what the caller has persisted (``on_persisted``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from kvcluster.errors import Compacted, ConfChangePending, NotLeader, ProposalDropped, Unavailable
from kvcluster.raft.confchange import ConfChange, ConfChangeType
from kvcluster.raft.log import NO_LIMIT, RaftLog
from kvcluster.raft.progress import Progress, ProgressState
from kvcluster.raft.read_only import ReadOnly
from kvcluster.raft.storage import Storage
from kvcluster.raft.tracker import ProgressTracker, VoteResult
from kvcluster.raft.types import (
    NONE,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    SoftState,
    StateRole,
)

__all__ = ["Config", "Raft"]

MT = MessageType
TRANSFER_CONTEXT = b"transfer"
# Vote messages carry the term they are about (set by the caller); forwarded requests carry 0.
_KEEPS_OWN_TERM = frozenset(
    {MT.VOTE, MT.VOTE_RESP, MT.PRE_VOTE, MT.PRE_VOTE_RESP, MT.PROP, MT.READ_INDEX}
)


@dataclass(slots=True)
class Config:
    id: int
    election_tick: int = 10
    heartbeat_tick: int = 1
    applied: int = 0
    max_size_per_msg: int = 1 << 20
    max_committed_size_per_ready: int = NO_LIMIT
    max_inflight_msgs: int = 256
    check_quorum: bool = True
    pre_vote: bool = True
    read_only_lease_based: bool = False
    fast_backtrack: bool = True

    def validate(self) -> None:
        if self.id == NONE:
            raise ValueError("node id must be >= 1")
        if self.heartbeat_tick <= 0:
            raise ValueError("heartbeat_tick must be > 0")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError("election_tick must be greater than heartbeat_tick")
        if self.max_inflight_msgs <= 0:
            raise ValueError("max_inflight_msgs must be > 0")
        if self.read_only_lease_based and not self.check_quorum:
            raise ValueError("lease-based reads need check_quorum")


class Raft:
    def __init__(self, config: Config, storage: Storage, rng: random.Random) -> None:
        config.validate()
        self.id = config.id
        self.cfg = config
        self.rng = rng
        self.log = RaftLog(storage, config.max_committed_size_per_ready)
        self.tracker = ProgressTracker(config.max_inflight_msgs)
        self.read_only = ReadOnly()
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.pending_reads: list[Message] = []  # reads waiting for the first commit of a term
        self.bcast_pending = False  # entries or a commit index not yet broadcast (flush_appends)
        self.term = 0
        self.vote = NONE
        self.leader_id = NONE
        self.role = StateRole.FOLLOWER
        self.lead_transferee = NONE
        self.pending_conf_index = 0
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = config.election_tick
        self._step_role: Callable[[Message], None] = self._step_follower
        self._tick: Callable[[], None] = self._tick_election

        hs, cs = storage.initial_state()
        last = self.log.last_index()
        for v in cs.voters:
            self.tracker.set_member(v, False, last + 1)
        for learner in cs.learners:
            self.tracker.set_member(learner, True, last + 1)
        if hs.term or hs.vote or hs.commit:
            if not self.log.committed <= hs.commit <= last:
                raise ValueError(f"hard state commit {hs.commit} outside the log [.., {last}]")
            self.log.committed = hs.commit
            self.term = hs.term
            self.vote = hs.vote
        if config.applied:
            self.log.applied_to(config.applied)
        self.become_follower(self.term, NONE)

    # -- reporting -------------------------------------------------------------------------
    def soft_state(self) -> SoftState:
        return SoftState(self.leader_id, self.role)

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def promotable(self) -> bool:
        return self.id in self.tracker.voters

    # -- sending ---------------------------------------------------------------------------
    def send(self, m: Message) -> None:
        m.from_ = self.id
        if m.type not in _KEEPS_OWN_TERM:
            m.term = self.term
        self.msgs.append(m)

    def maybe_send_append(self, to: int, send_if_empty: bool = True) -> bool:
        """Send ``to`` the entries it lacks (or a snapshot). Returns whether a message left."""
        pr = self.tracker.progress[to]
        if pr.is_paused():
            return False
        log = self.log
        prev = pr.next_index - 1
        try:
            prev_term = log.term(prev)
            ents = log.entries_from(pr.next_index, self.cfg.max_size_per_msg)
        except Compacted:
            return self._send_snapshot(to, pr)
        if not ents and not send_if_empty:
            return False
        last = ents[-1].index if ents else prev
        self.send(
            Message(
                MT.APP, to=to, index=prev, log_term=prev_term, entries=ents, commit=log.committed
            )
        )
        pr.sent_entries(last, len(ents))
        return True

    def _send_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active:
            return False
        try:
            snap = self.log.snapshot()
        except Unavailable:
            return False  # being made; try again later
        if snap.is_empty():
            raise AssertionError("need a snapshot but the storage has none")
        self.send(Message(MT.SNAP, to=to, snapshot=snap))
        pr.become_snapshot(snap.metadata.index)
        return True

    def bcast_append(self) -> None:
        for to in self.tracker.progress:
            if to != self.id:
                self.maybe_send_append(to)

    def bcast_heartbeat(self) -> None:
        seq = self.read_only.seq
        committed = self.log.committed
        for to, pr in self.tracker.progress.items():
            if to != self.id:
                self.send(
                    Message(
                        MT.HEARTBEAT, to=to, commit=min(pr.match_index, committed), read_seq=seq
                    )
                )

    # -- role transitions ------------------------------------------------------------------
    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = NONE
        self.leader_id = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.cfg.election_tick + self.rng.randrange(
            self.cfg.election_tick
        )
        self.lead_transferee = NONE
        self.tracker.reset_votes()
        last = self.log.last_index()
        persisted = self.log.unstable.offset - 1 if self.log.unstable.snapshot is None else 0
        for node_id, pr in self.tracker.progress.items():
            fresh = Progress(last + 1, self.cfg.max_inflight_msgs, pr.is_learner)
            if node_id == self.id:
                fresh.match_index = min(persisted, last)
            self.tracker.progress[node_id] = fresh
        self.pending_conf_index = 0
        self.read_only.reset()
        self.pending_reads = []

    def become_follower(self, term: int, leader_id: int) -> None:
        self._reset(term)
        self._step_role = self._step_follower
        self._tick = self._tick_election
        self.leader_id = leader_id
        self.role = StateRole.FOLLOWER

    def become_pre_candidate(self) -> None:
        if self.role == StateRole.LEADER:
            raise AssertionError("leader cannot become pre-candidate")
        # A pre-election changes neither the term nor the vote.
        self._step_role = self._step_candidate
        self.tracker.reset_votes()
        self._tick = self._tick_election
        self.leader_id = NONE
        self.role = StateRole.PRE_CANDIDATE

    def become_candidate(self) -> None:
        if self.role == StateRole.LEADER:
            raise AssertionError("leader cannot become candidate")
        self._reset(self.term + 1)
        self._step_role = self._step_candidate
        self._tick = self._tick_election
        self.vote = self.id
        self.role = StateRole.CANDIDATE

    def become_leader(self) -> None:
        if self.role == StateRole.FOLLOWER:
            raise AssertionError("follower cannot become leader without an election")
        self._reset(self.term)
        self._step_role = self._step_leader
        self._tick = self._tick_heartbeat
        self.leader_id = self.id
        self.role = StateRole.LEADER
        self.tracker.progress[self.id].become_replicate()
        self.tracker.progress[self.id].recent_active = True
        # Conservatively forbid conf changes until everything before this term is applied.
        self.pending_conf_index = self.log.last_index()
        # The no-op entry of the new term: committing it commits everything before it.
        self.append_entries([Entry(0, 0)])

    # -- ticks -----------------------------------------------------------------------------
    def tick(self) -> None:
        self._tick()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self.step(Message(MT.HUP, from_=self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.cfg.election_tick:
            self.election_elapsed = 0
            if self.cfg.check_quorum:
                self.step(Message(MT.CHECK_QUORUM, from_=self.id))
            if self.role == StateRole.LEADER and self.lead_transferee != NONE:
                self.lead_transferee = NONE  # the transfer did not finish in time
            if self.role == StateRole.LEADER and not self.promotable():
                self._hand_off()  # still leading after leaving the voters: try again
        if self.role != StateRole.LEADER:
            return
        if self.heartbeat_elapsed >= self.cfg.heartbeat_tick:
            self.heartbeat_elapsed = 0
            self.step(Message(MT.BEAT, from_=self.id))

    # -- elections -------------------------------------------------------------------------
    def hup(self, transfer: bool = False) -> None:
        if self.role == StateRole.LEADER or not self.promotable():
            return
        if self._has_unapplied_conf_changes():
            return
        if self.cfg.pre_vote and not transfer:
            self.campaign(MT.PRE_VOTE, transfer)
        else:
            self.campaign(MT.VOTE, transfer)

    def _has_unapplied_conf_changes(self) -> bool:
        log = self.log
        if log.applied >= log.committed:
            return False
        try:
            ents = log.slice(log.applied + 1, log.committed + 1)
        except Compacted:
            return False
        return any(e.type == EntryType.CONF_CHANGE for e in ents)

    def campaign(self, kind: MessageType, transfer: bool = False) -> None:
        if kind == MT.PRE_VOTE:
            self.become_pre_candidate()
            term = self.term + 1
        else:
            self.become_candidate()
            term = self.term
        self.tracker.record_vote(self.id, True)
        if self.tracker.tally_votes()[2] == VoteResult.WON:
            # A single-voter group wins at once.
            if kind == MT.PRE_VOTE:
                self.campaign(MT.VOTE, transfer)
            else:
                self.become_leader()
            return
        last = self.log.last_index()
        last_term = self.log.last_term()
        ctx = TRANSFER_CONTEXT if transfer else b""
        for to in sorted(self.tracker.voters):
            if to != self.id:
                self.send(
                    Message(kind, to=to, term=term, index=last, log_term=last_term, context=ctx)
                )

    def _handle_vote_request(self, m: Message) -> None:
        can_vote = (
            self.vote == m.from_
            or (self.vote == NONE and self.leader_id == NONE)
            or (m.type == MT.PRE_VOTE and m.term > self.term)
        )
        resp = MT.VOTE_RESP if m.type == MT.VOTE else MT.PRE_VOTE_RESP
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            # The response carries the request's term so that a pre-candidate counts it.
            self.send(Message(resp, to=m.from_, term=m.term))
            if m.type == MT.VOTE:
                self.election_elapsed = 0
                self.vote = m.from_
        else:
            self.send(Message(resp, to=m.from_, term=self.term, reject=True))

    # -- the entry point -------------------------------------------------------------------
    def step(self, m: Message) -> None:
        if m.term == 0:
            pass  # local message (or a forwarded proposal / read request)
        elif m.term > self.term:
            if m.type in (MT.VOTE, MT.PRE_VOTE):
                in_lease = (
                    self.cfg.check_quorum
                    and self.leader_id != NONE
                    and self.election_elapsed < self.cfg.election_tick
                )
                if in_lease and m.context != TRANSFER_CONTEXT:
                    # We heard from a leader recently: do not let a partitioned node that
                    # comes back disrupt it (the dissertation's §4.2.3 lease).
                    return
            if m.type == MT.PRE_VOTE:
                pass  # never change term for a pre-vote
            elif m.type == MT.PRE_VOTE_RESP and not m.reject:
                pass  # the term we will campaign for once a quorum agrees
            elif m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):
                self.become_follower(m.term, m.from_)
            else:
                self.become_follower(m.term, NONE)
        elif m.term < self.term:
            if (self.cfg.check_quorum or self.cfg.pre_vote) and m.type in (MT.HEARTBEAT, MT.APP):
                # A stale leader learns of the new term from this and steps down; without it
                # a node partitioned under pre-vote could never rejoin.
                self.send(Message(MT.APP_RESP, to=m.from_))
            elif m.type == MT.PRE_VOTE:
                self.send(Message(MT.PRE_VOTE_RESP, to=m.from_, term=self.term, reject=True))
            return

        t = m.type
        if t == MT.HUP:
            self.hup()
        elif t in (MT.VOTE, MT.PRE_VOTE):
            self._handle_vote_request(m)
        else:
            self._step_role(m)

    # -- leader ----------------------------------------------------------------------------
    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t == MT.BEAT:
            self.bcast_heartbeat()
            return
        if t == MT.CHECK_QUORUM:
            if not self.tracker.quorum_active():
                self.become_follower(self.term, NONE)
                return
            for node_id, other in self.tracker.progress.items():
                other.recent_active = node_id == self.id
            return
        if t == MT.PROP:
            self._propose(m.entries)
            return
        if t == MT.READ_INDEX:
            self._leader_read_index(m)
            return

        pr = self.tracker.progress.get(m.from_)
        if pr is None:
            return
        if t == MT.APP_RESP:
            self._handle_append_response(m, pr)
        elif t == MT.HEARTBEAT_RESP:
            pr.recent_active = True
            pr.probe_sent = False
            if pr.state == ProgressState.REPLICATE and pr.inflights.full():
                pr.inflights.free_first_one()  # let one message through again
            if pr.match_index < self.log.last_index():
                self.maybe_send_append(m.from_)
            if m.read_seq:
                self.read_only.ack(m.from_, m.read_seq)
                self._release_reads()
        elif t == MT.SNAP_STATUS:
            if pr.state != ProgressState.SNAPSHOT:
                return
            if m.reject:
                pr.pending_snapshot = 0
            pr.become_probe()
            # Wait for the follower's answer (or a heartbeat) before probing again.
            pr.probe_sent = True
        elif t == MT.UNREACHABLE:
            if pr.state == ProgressState.REPLICATE:
                pr.become_probe()
        elif t == MT.TRANSFER_LEADER:
            self._handle_transfer_leader(m, pr)

    def _propose(self, entries: list[Entry]) -> None:
        if not entries:
            raise ProposalDropped("empty proposal")
        if self.id not in self.tracker.progress:
            raise ProposalDropped("this node was removed from the group")
        if self.lead_transferee != NONE:
            raise ProposalDropped(f"leadership is being transferred to {self.lead_transferee}")
        changes = [i for i, e in enumerate(entries) if e.type == EntryType.CONF_CHANGE]
        if changes:
            if self.pending_conf_index > self.log.applied:
                raise ConfChangePending(
                    f"a membership change at or before index {self.pending_conf_index} "
                    f"is not applied yet (applied {self.log.applied})"
                )
            if len(changes) > 1:
                raise ConfChangePending("one membership change at a time")
            cc = ConfChange.decode(entries[changes[0]].data)
            if cc.node_id == self.id and cc.type != ConfChangeType.ADD_VOTER:
                # A leader leaving the voters steps down at once; the others may still need
                # its vote (the change is not applied there yet) and it may hold the longest
                # log, so nobody could win an election: move leadership away first.
                raise ProposalDropped(
                    "the leader cannot remove or demote itself: transfer leadership first"
                )
            self.pending_conf_index = self.log.last_index() + changes[0] + 1
        self.append_entries(entries)
        self.bcast_pending = True  # sent once per Ready by flush_appends: one APP per turn

    def append_entries(self, entries: list[Entry]) -> None:
        li = self.log.last_index()
        term = self.term
        ents = [Entry(term, li + 1 + i, e.type, e.data) for i, e in enumerate(entries)]
        self.log.append(ents)
        # The leader's own acknowledgement waits for the caller to persist (on_persisted).

    def on_persisted(self, index: int) -> None:
        """The caller made entries up to ``index`` durable (RawNode.advance)."""
        if self.role != StateRole.LEADER:
            return
        pr = self.tracker.progress.get(self.id)
        if pr is not None and pr.maybe_update(index) and self.maybe_commit():
            self.bcast_append()

    def maybe_commit(self) -> bool:
        """Commit what a majority has, if it is of the current term (Figure 8)."""
        if self.log.maybe_commit(self.tracker.committed(), self.term):
            if self.pending_reads and self._committed_in_current_term():
                waiting, self.pending_reads = self.pending_reads, []
                for m in waiting:
                    self._leader_read_index(m)
            return True
        return False

    def _committed_in_current_term(self) -> bool:
        return self.log.term_or_zero(self.log.committed) == self.term

    def _handle_append_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        if m.reject:
            if self.cfg.fast_backtrack:
                hint = m.reject_hint
                if m.log_term > 0:
                    # Skip the follower's whole conflicting term: if we have entries of that
                    # term, resume after our last one; otherwise before its first one.
                    i, t = self.log.last_index_of_term_at_most(m.index, m.log_term)
                    if t == m.log_term:
                        hint = i + 1
            else:
                hint = m.index  # the textbook decrement: next_index - 1
            if pr.maybe_decr_to(m.index, hint):
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                self.maybe_send_append(m.from_)
            return

        was_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state == ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state == ProgressState.SNAPSHOT:
            if pr.match_index >= pr.pending_snapshot:
                pr.become_probe()
                pr.become_replicate()
        else:
            pr.inflights.free_le(m.index)

        if self.maybe_commit():
            self.bcast_pending = True  # tell followers the new commit index, once per turn
        elif was_paused and not self.bcast_pending:
            self.maybe_send_append(m.from_)
        while self.maybe_send_append(m.from_, send_if_empty=False):
            pass
        if m.from_ == self.lead_transferee and pr.match_index == self.log.last_index():
            self.send(Message(MT.TIMEOUT_NOW, to=m.from_))

    def _handle_transfer_leader(self, m: Message, pr: Progress) -> None:
        transferee = m.from_
        if pr.is_learner or transferee == self.id:
            return
        if self.lead_transferee != NONE:
            if self.lead_transferee == transferee:
                return
            self.lead_transferee = NONE
        self.election_elapsed = 0  # the transfer must finish within one election timeout
        self.lead_transferee = transferee
        if pr.match_index == self.log.last_index():
            self.send(Message(MT.TIMEOUT_NOW, to=transferee))
        else:
            self.maybe_send_append(transferee)

    # -- reads -----------------------------------------------------------------------------
    def _leader_read_index(self, m: Message) -> None:
        from_ = m.from_ if m.from_ not in (NONE, self.id) else self.id
        if self.tracker.is_singleton() and self.promotable():
            self._respond_read(from_, m.context, self.log.committed)
            return
        if not self._committed_in_current_term():
            self.pending_reads.append(m)
            return
        if self.cfg.read_only_lease_based:
            self._respond_read(from_, m.context, self.log.committed)
            return
        self.read_only.add(m.context, self.log.committed, from_)

    def flush_appends(self) -> None:
        """Send the entries proposed (and the commit index reached) since the last Ready:
        proposals of one turn leave as one AppendEntries per follower."""
        if self.bcast_pending:
            self.bcast_pending = False
            if self.role == StateRole.LEADER:
                self.bcast_append()

    def flush_reads(self) -> None:
        """Start one heartbeat round for every read request that arrived since the last."""
        if self.role == StateRole.LEADER and self.read_only.flush():
            self.bcast_heartbeat()
            self._release_reads()

    def _release_reads(self) -> None:
        tr = self.tracker
        for req in self.read_only.release(tr.voters, self.id, tr.quorum()):
            self._respond_read(req.from_, req.ctx, req.index)

    def _respond_read(self, to: int, ctx: bytes, index: int) -> None:
        if to == self.id:
            self.read_states.append(ReadState(index, ctx))
        else:
            self.send(Message(MT.READ_INDEX_RESP, to=to, index=index, context=ctx))

    # -- candidate and pre-candidate -------------------------------------------------------
    def _step_candidate(self, m: Message) -> None:
        t = m.type
        my_resp = MT.PRE_VOTE_RESP if self.role == StateRole.PRE_CANDIDATE else MT.VOTE_RESP
        if t == MT.PROP:
            raise NotLeader(NONE, "no leader: an election is in progress")
        if t == MT.READ_INDEX:
            if m.from_ in (NONE, self.id):
                raise NotLeader(NONE, "no leader: an election is in progress")
            return
        if t in (MT.APP, MT.HEARTBEAT, MT.SNAP):
            self.become_follower(m.term, m.from_)
            self._step_follower(m)
        elif t == my_resp:
            self.tracker.record_vote(m.from_, not m.reject)
            result = self.tracker.tally_votes()[2]
            if result == VoteResult.WON:
                if self.role == StateRole.PRE_CANDIDATE:
                    self.campaign(MT.VOTE)
                else:
                    self.become_leader()
                    self.bcast_append()
            elif result == VoteResult.LOST:
                self.become_follower(self.term, NONE)

    # -- follower --------------------------------------------------------------------------
    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t == MT.PROP:
            raise NotLeader(self.leader_id)
        if t in (MT.APP, MT.HEARTBEAT, MT.SNAP):
            self.election_elapsed = 0
            self.leader_id = m.from_
            if t == MT.APP:
                self._handle_append(m)
            elif t == MT.HEARTBEAT:
                self.log.commit_to(m.commit)
                self.send(Message(MT.HEARTBEAT_RESP, to=m.from_, read_seq=m.read_seq))
            else:
                self._handle_snapshot(m)
        elif t == MT.TRANSFER_LEADER:
            if self.leader_id != NONE:
                m.to = self.leader_id
                self.msgs.append(m)  # forwarded as is: ``from_`` names the transferee
        elif t == MT.TIMEOUT_NOW:
            self.hup(transfer=True)
        elif t == MT.READ_INDEX:
            if self.leader_id == NONE:
                if m.from_ in (NONE, self.id):
                    raise NotLeader(NONE, "no known leader to confirm the read")
                return
            self.send(Message(MT.READ_INDEX, to=self.leader_id, context=m.context))
        elif t == MT.READ_INDEX_RESP:
            self.read_states.append(ReadState(m.index, m.context))

    def _handle_append(self, m: Message) -> None:
        log = self.log
        if m.index < log.committed:
            self.send(Message(MT.APP_RESP, to=m.from_, index=log.committed))
            return
        last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self.send(Message(MT.APP_RESP, to=m.from_, index=last_new))
            return
        hint_index, hint_term = log.conflict_hint(m.index)
        self.send(
            Message(
                MT.APP_RESP,
                to=m.from_,
                index=m.index,
                reject=True,
                reject_hint=hint_index,
                log_term=hint_term,
            )
        )

    def _handle_snapshot(self, m: Message) -> None:
        snap = m.snapshot
        if snap is not None and self.restore(snap):
            self.send(Message(MT.APP_RESP, to=m.from_, index=self.log.last_index()))
        else:
            self.send(Message(MT.APP_RESP, to=m.from_, index=self.log.committed))

    def restore(self, snap: Snapshot) -> bool:
        """Install a leader's snapshot. Returns False if we already have what it holds."""
        meta = snap.metadata
        if meta.index <= self.log.committed:
            return False
        if self.log.match_term(meta.index, meta.term):
            # We have the entry: fast-forward the commit index and keep our log.
            self.log.commit_to(meta.index)
            return False
        self.log.restore(snap)
        self._load_conf_state(meta.conf_state)
        return True

    def _load_conf_state(self, cs: ConfState) -> None:
        self.tracker = ProgressTracker(self.cfg.max_inflight_msgs)
        nxt = self.log.last_index() + 1
        for v in cs.voters:
            self.tracker.set_member(v, False, nxt)
        for learner in cs.learners:
            self.tracker.set_member(learner, True, nxt)

    def _hand_off(self) -> None:
        """A leader that is no longer a voter transfers leadership to the most caught-up
        voter; it keeps leading (refusing proposals) until that voter wins, retrying every
        election timeout."""
        tr = self.tracker
        if not tr.voters:
            self.become_follower(self.term, NONE)
            return
        target = max(sorted(tr.voters), key=lambda v: tr.progress[v].match_index)
        self.lead_transferee = NONE
        self._handle_transfer_leader(Message(MT.TRANSFER_LEADER, from_=target), tr.progress[target])
        self.bcast_append()

    # -- membership ------------------------------------------------------------------------
    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        nxt = self.log.last_index() + 1
        if cc.type == ConfChangeType.ADD_VOTER:
            self.tracker.set_member(cc.node_id, False, nxt)
        elif cc.type == ConfChangeType.ADD_LEARNER:
            self.tracker.set_member(cc.node_id, True, nxt)
        else:
            self.tracker.remove(cc.node_id)
        if self.role == StateRole.LEADER:
            if not self.promotable():
                # We left the voters, but stepping down now could leave nobody electable:
                # the others may still count us (the change is not applied there yet) and
                # we may hold the longest log. Hand leadership to a voter first.
                self._hand_off()
            else:
                if self.lead_transferee not in self.tracker.voters:
                    self.lead_transferee = NONE
                self.maybe_commit()  # a smaller quorum may commit more
                self.bcast_append()  # tell everyone (new members learn the log at once)
        return self.tracker.conf_state()
