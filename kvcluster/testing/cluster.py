"""A simulated Raft group: replicas (RawNode + MemoryStorage + state machine) on a SimNetwork.

Contract:
- Deterministic: one ``random.Random`` (the cluster's) makes every choice, including the seeds
  of the replicas' own ``random.Random``; nothing reads a clock or the global ``random``.
- Each replica runs the Ready loop exactly as ``types.Ready`` orders a runtime to: persist the
  snapshot, entries and hard state into its MemoryStorage (its "disk"), then send the
  messages (before persisting when ``Ready.may_send_before_persist``, as the node runtime
  does, so a crash before persisting can follow them), then apply committed entries (conf
  changes through ``apply_conf_change``) and serve read states, then ``advance``.
  ``handle_ready`` can crash the replica between any two of those steps.
- A crash loses the RawNode, the state machine and every pending proposal; the MemoryStorage
  survives. ``restart`` rebuilds the replica from it: the state machine restores the storage
  snapshot and the core replays committed entries after it.
- The state machine records what it applied as a digest chain over (index, term, type, data);
  a snapshot's data is that digest, so a restored replica can be compared with the others.
- Requests the core refuses with a ``KvClusterError`` (not leader, proposal dropped, conf
  change pending) are traced and otherwise ignored; anything else the core raises propagates.
- Safety is judged elsewhere: the cluster reports events to an ``invariants.Checker``.
- A replica whose removal is applied by another replica is retired: it stops for good (a
  runtime destroys removed replicas) and its id is never reused. Until then it keeps running:
  it may be the only one that can tell the others its removal committed (a removed leader
  steps down at once), or the vote that a replica still in the old configuration needs.
"""

from __future__ import annotations

import enum
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

from kvcluster.errors import KvClusterError
from kvcluster.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    EntryType,
    MemoryStorage,
    Message,
    MessageType,
    RawNode,
    Snapshot,
    StateRole,
)
from kvcluster.raft.log import NO_LIMIT
from kvcluster.testing.invariants import Checker, InvariantViolation, term_or_none
from kvcluster.testing.network import Envelope, SimNetwork

__all__ = [
    "Cluster",
    "ClusterConfig",
    "CrashPoint",
    "SimNode",
    "StateMachine",
    "fmt_entries",
    "fmt_msg",
]

MT = MessageType


class CrashPoint(enum.Enum):
    BEFORE_PERSIST = "before-persist"  # ready() handed out, nothing written (early sends out)
    BEFORE_SEND = "before-send"  # persisted, messages never sent
    BEFORE_APPLY = "before-apply"  # sent, nothing applied, no advance()


@dataclass(slots=True)
class ClusterConfig:
    nodes: int = 3
    election_tick: int = 10
    heartbeat_tick: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    fast_backtrack: bool = True
    max_inflight_msgs: int = 256
    max_size_per_msg: int = 1 << 20
    max_committed_size_per_ready: int = NO_LIMIT
    unreachable_rate: float = 0.3  # how often a lost message is reported as unreachable
    # How often a replica steps messages addressed to it while its Ready is being written
    # (between ready() and advance()), as the node runtime does. 0 keeps the schedules of
    # the seed lists in the tests.
    step_during_write: float = 0.0

    def raft_config(self, node_id: int, applied: int) -> Config:
        return Config(
            id=node_id,
            election_tick=self.election_tick,
            heartbeat_tick=self.heartbeat_tick,
            applied=applied,
            max_size_per_msg=self.max_size_per_msg,
            max_committed_size_per_ready=self.max_committed_size_per_ready,
            max_inflight_msgs=self.max_inflight_msgs,
            check_quorum=self.check_quorum,
            pre_vote=self.pre_vote,
            fast_backtrack=self.fast_backtrack,
        )


class StateMachine:
    """The replicated application: a digest chain over every applied entry."""

    __slots__ = ("applied_index", "conf_state", "digest")

    def __init__(self, snap: Snapshot) -> None:
        self.applied_index = snap.metadata.index
        self.digest = snap.data
        self.conf_state = snap.metadata.conf_state

    def apply(self, e: Entry) -> None:
        h = hashlib.blake2b(self.digest, digest_size=16)
        h.update(b"%d/%d/%d/" % (e.index, e.term, e.type))
        h.update(e.data)
        self.digest = h.digest()
        self.applied_index = e.index


class SimNode:
    __slots__ = ("id", "life", "pending", "raw", "retired", "sm", "storage")

    def __init__(self, node_id: int, storage: MemoryStorage) -> None:
        self.id = node_id
        self.storage = storage
        self.raw: RawNode | None = None
        self.sm: StateMachine | None = None
        self.life = 0
        self.retired = False
        self.pending: set[bytes] = set()  # proposals made in this life, awaiting apply

    @property
    def up(self) -> bool:
        return self.raw is not None

    def role(self) -> StateRole | None:
        return self.raw.raft.role if self.raw is not None else None

    def describe(self) -> str:
        if self.retired:
            return f"{self.id}:retired"
        if self.raw is None:
            hs = self.storage.hard_state
            return f"{self.id}:down(t{hs.term} c{hs.commit} last{self.storage.last_index()})"
        r = self.raw.raft
        return (
            f"{self.id}:{r.role.name[0]}(t{r.term} c{r.log.committed} a{r.log.applied} "
            f"last{r.log.last_index()})"
        )


def fmt_entries(ents: list[Entry]) -> str:
    def one(e: Entry) -> str:
        kind = "cc" if e.type == EntryType.CONF_CHANGE else (e.data.decode() or "noop")
        return f"{e.index}/t{e.term}:{kind}"

    if len(ents) > 6:
        return f"[{one(ents[0])} .. {one(ents[-1])} ({len(ents)})]"
    return "[" + " ".join(one(e) for e in ents) + "]"


def fmt_msg(m: Message) -> str:
    s = f"{m.type.name} {m.from_}->{m.to} t{m.term}"
    t = m.type
    if t == MT.APP:
        s += f" prev={m.index}/t{m.log_term} c{m.commit} {fmt_entries(m.entries)}"
    elif t == MT.APP_RESP:
        s += f" idx{m.index}"
        if m.reject:
            s += f" REJECT hint={m.reject_hint}/t{m.log_term}"
    elif t in (MT.VOTE, MT.PRE_VOTE):
        s += f" last={m.index}/t{m.log_term}" + (" transfer" if m.context else "")
    elif t in (MT.VOTE_RESP, MT.PRE_VOTE_RESP):
        s += " REJECT" if m.reject else " granted"
    elif t == MT.SNAP and m.snapshot is not None:
        meta = m.snapshot.metadata
        s += f" snap={meta.index}/t{meta.term} {meta.conf_state}"
    elif t in (MT.HEARTBEAT, MT.HEARTBEAT_RESP):
        s += f" c{m.commit} seq{m.read_seq}"
    elif t in (MT.READ_INDEX, MT.READ_INDEX_RESP):
        s += f" idx{m.index} ctx={m.context.decode()}"
    return s


class Cluster:
    def __init__(
        self,
        cfg: ClusterConfig,
        rng: random.Random,
        checker: Checker | None = None,
        trace: Callable[[str], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.rng = rng
        self.checker = checker if checker is not None else Checker()
        self.trace = trace
        self.net = SimNetwork(rng)
        self.genesis = ConfState(tuple(range(1, cfg.nodes + 1)), ())
        self.nodes: dict[int, SimNode] = {}
        self.next_id = cfg.nodes + 1
        self._proposal_seq = 0
        self._read_seq = 0
        self._retire: list[int] = []
        for i in self.genesis.voters:
            self._start(self._new_node(i), applied=0)

    # -- bookkeeping -----------------------------------------------------------------------
    def log(self, line: str) -> None:
        if self.trace is not None:
            self.trace(line)

    def _new_node(self, node_id: int) -> SimNode:
        # Every replica, including one that joins later, starts from the group's genesis
        # membership and learns the rest from the log or a snapshot.
        n = SimNode(node_id, MemoryStorage(self.genesis.voters, self.genesis.learners))
        self.nodes[node_id] = n
        return n

    def _start(self, n: SimNode, applied: int) -> None:
        seed = self.rng.getrandbits(64)
        n.raw = RawNode(self.cfg.raft_config(n.id, applied), n.storage, random.Random(seed))
        n.sm = StateMachine(n.storage.snapshot())
        n.pending = set()

    def live(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.raw is not None]

    def down(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.raw is None and not n.retired]

    def leaders(self) -> list[SimNode]:
        """Live leaders, newest term first."""
        ls = [n for n in self.live() if n.role() == StateRole.LEADER]
        ls.sort(key=lambda n: -n.raw.raft.term if n.raw is not None else 0)
        return ls

    def max_known_commit(self) -> int:
        best = 0
        for n in self.nodes.values():
            c = n.raw.raft.log.committed if n.raw is not None else n.storage.hard_state.commit
            best = max(best, c)
        return best

    def describe(self) -> str:
        return " ".join(n.describe() for n in self.nodes.values())

    def check(self) -> None:
        """Run the per-step invariants (the driver calls this after every step)."""
        self.checker.check_step(self.nodes.values())
        for leader in self.leaders():
            self.checker.check_follower_matches(leader, self.nodes)

    # -- time and messages -----------------------------------------------------------------
    def tick(self, n: SimNode) -> None:
        assert n.raw is not None
        n.raw.tick()

    def deliver_one(self) -> SimNode | None:
        """Deliver (or lose) one message in flight; returns the node that received it."""
        picked = self.net.pick()
        if picked is None:
            return None
        env, lost = picked
        return self.deliver(env, lost)

    def deliver(self, env: Envelope, lost: bool = False) -> SimNode | None:
        dst = self.nodes.get(env.dst)
        m = env.msg
        if lost or dst is None or dst.raw is None:
            why = "lost" if lost else "dst down"
            self.log(f"  drop({why}) {fmt_msg(m)}")
            self._report_lost(env)
            return None
        if self.trace is not None:
            self.log(f"  deliver {fmt_msg(m)}")
        dst.raw.step(m)
        if m.type == MT.SNAP:
            src = self.nodes.get(env.src)
            if src is not None and src.raw is not None and src.life == env.src_life:
                src.raw.report_snapshot(env.dst, ok=True)
        self.checker.check_leaders((dst,))
        return dst

    def _report_lost(self, env: Envelope) -> None:
        """Tell the sender's runtime what its transport would have noticed."""
        src = self.nodes.get(env.src)
        if src is None or src.raw is None or src.life != env.src_life:
            return
        if env.msg.type == MT.SNAP:
            src.raw.report_snapshot(env.dst, ok=False)
        elif env.msg.type == MT.APP and self.rng.random() < self.cfg.unreachable_rate:
            src.raw.report_unreachable(env.dst)

    def _send(self, n: SimNode, m: Message) -> None:
        if self.net.send(n.id, n.life, m) is None:
            self.log(f"  drop(out) {fmt_msg(m)}")
            self._report_lost(Envelope(0, n.id, n.life, m.to, m))

    # -- the Ready loop --------------------------------------------------------------------
    def handle_ready(self, n: SimNode, crash_at: CrashPoint | None = None) -> bool:
        """Run one persist -> send -> apply -> advance cycle if ``n`` has work. Returns False
        if ``n`` crashed on the way."""
        raw = n.raw
        if raw is None or not raw.has_ready():
            return True
        rd = raw.ready()
        chk = self.checker
        if self.trace is not None:
            parts = [f"  ready {n.id}:"]
            if rd.snapshot is not None:
                parts.append(f"snap={rd.snapshot.metadata.index}/t{rd.snapshot.metadata.term}")
            if rd.entries:
                parts.append(f"persist={fmt_entries(rd.entries)}")
            if rd.hard_state is not None:
                hs = rd.hard_state
                parts.append(f"hs=(t{hs.term} v{hs.vote} c{hs.commit})")
            if rd.committed_entries:
                parts.append(f"apply={fmt_entries(rd.committed_entries)}")
            if rd.soft_state is not None:
                parts.append(f"{rd.soft_state.role.name}(lead {rd.soft_state.leader_id})")
            parts.append(f"msgs={len(rd.messages)}")
            self.log(" ".join(parts))
        early = rd.may_send_before_persist()
        if early:  # as the node runtime does: a leader's appends go out during its write
            for m in rd.messages:
                self._send(n, m)
        if crash_at == CrashPoint.BEFORE_PERSIST:
            self.crash(n, crash_at.value)
            return False
        # 1. Persist.
        st = n.storage
        if rd.snapshot is not None:
            st.apply_snapshot(rd.snapshot)
        if rd.entries:
            prev_term = term_or_none(raw.raft.log, rd.entries[0].index - 1)
            chk.check_entries(n.id, rd.entries, prev_term)
            st.append(rd.entries)
        if rd.hard_state is not None:
            chk.on_persist_hard_state(n.id, st.hard_state, rd.hard_state, st.last_index())
            st.set_hard_state(rd.hard_state)
        if self.cfg.step_during_write and self.rng.random() < self.cfg.step_during_write:
            self._deliver_during_write(n)
        if crash_at == CrashPoint.BEFORE_SEND:
            self.crash(n, crash_at.value)
            return False
        # 2. Send.
        for m in rd.messages if not early else ():
            self._send(n, m)
        if crash_at == CrashPoint.BEFORE_APPLY:
            self.crash(n, crash_at.value)
            return False
        # 3. Apply.
        sm = n.sm
        assert sm is not None
        if rd.snapshot is not None:
            chk.on_restore(n.id, sm.applied_index, rd.snapshot)
            n.sm = sm = StateMachine(rd.snapshot)
        for e in rd.committed_entries:
            prev = sm.applied_index
            if e.type == EntryType.CONF_CHANGE:
                self._apply_conf_change(n, sm, e)
            sm.apply(e)
            chk.on_apply(n.id, prev, e, sm.digest)
            if e.data in n.pending:
                n.pending.discard(e.data)
                chk.on_ack(e.data, e.index)
        for rs in rd.read_states:
            self.log(f"  read-state {n.id}: idx{rs.index} ctx={rs.request_ctx.decode()}")
            chk.on_read_state(n.id, rs)
        # 4. Advance.
        raw.advance(rd)
        chk.check_leaders((n,))
        self._retire_removed()
        return n.raw is not None

    def _deliver_during_write(self, n: SimNode) -> None:
        """Step up to three of the messages in flight to ``n`` into it while its Ready is
        out (the write's contents were fixed by ``ready()``; what the steps produce leaves
        in the next Ready)."""
        for env in self.net.take_to(n.id, self.rng.randint(1, 3)):
            if self.trace is not None:
                self.log(f"  (during {n.id}'s write)")
            self.deliver(env, self.net.blocked(env.src, env.dst))

    def _apply_conf_change(self, n: SimNode, sm: StateMachine, e: Entry) -> None:
        assert n.raw is not None
        cc = ConfChange.decode(e.data)
        sm.conf_state = n.raw.apply_conf_change(cc)
        self.log(f"  conf {n.id}@{e.index}: {cc.type.name} {cc.node_id} -> {sm.conf_state}")
        if cc.type == ConfChangeType.REMOVE_NODE and cc.node_id != n.id:
            self._retire.append(cc.node_id)

    def _retire_removed(self) -> None:
        while self._retire:
            victim = self.nodes.get(self._retire.pop())
            if victim is not None and not victim.retired:
                self.log(f"  retire {victim.id} (its removal was applied)")
                victim.raw = None
                victim.sm = None
                victim.pending = set()
                victim.retired = True

    def drain(self, n: SimNode) -> None:
        """Handle Readies until ``n`` has no more work (a runtime's loop)."""
        for _ in range(10_000):
            if n.raw is None or not n.raw.has_ready():
                return
            self.handle_ready(n)
        raise InvariantViolation(f"node {n.id} never runs out of Readies")

    def settle(self, max_messages: int = 20_000) -> None:
        """Deliver everything in flight, oldest first, and handle every Ready, until the
        network is quiet (a calm stretch: nothing is lost unless a link is cut)."""
        for n in self.live():
            self.drain(n)
        budget = max_messages
        while self.net.inflight:
            for env in self.net.take_all():
                budget -= 1
                if budget == 0:
                    raise InvariantViolation("message storm: the network never went quiet")
                lost = self.net.blocked(env.src, env.dst)
                dst = self.deliver(env, lost)
                if dst is not None:
                    self.drain(dst)
            for n in self.live():
                self.drain(n)

    def round(self) -> None:
        """Every live replica ticks once, then the cluster settles; invariants are checked."""
        for n in self.live():
            if n.raw is not None:  # (an earlier one in this loop may have retired it)
                self.tick(n)
                self.drain(n)
        self.settle()
        self.check()

    # -- client requests -------------------------------------------------------------------
    def propose(self, n: SimNode, count: int = 1) -> None:
        assert n.raw is not None
        datas = []
        for _ in range(count):
            self._proposal_seq += 1
            datas.append(b"p%d" % self._proposal_seq)
        try:
            if count == 1:
                n.raw.propose(datas[0])
            else:
                n.raw.propose_many(datas)
        except KvClusterError as e:
            self.log(f"  propose {n.id} {datas[0].decode()}..: refused ({type(e).__name__})")
            return
        self.log(f"  propose {n.id}: {' '.join(d.decode() for d in datas)}")
        n.pending.update(datas)

    def read_index(self, n: SimNode) -> None:
        assert n.raw is not None
        self._read_seq += 1
        ctx = b"r%d" % self._read_seq
        floor = self.max_known_commit()
        self.checker.on_read_request(ctx, floor)
        try:
            n.raw.read_index(ctx)
        except KvClusterError as e:
            self.log(f"  read {n.id} {ctx.decode()}: refused ({type(e).__name__})")
            return
        self.log(f"  read {n.id} {ctx.decode()} (floor {floor})")

    def transfer_leader(self, n: SimNode, target: int) -> None:
        assert n.raw is not None
        self.log(f"  transfer-leader via {n.id} to {target}")
        n.raw.transfer_leader(target)

    def propose_conf_change(self, n: SimNode, cc: ConfChange) -> bool:
        assert n.raw is not None
        try:
            n.raw.propose_conf_change(cc)
        except KvClusterError as e:
            self.log(f"  conf-change {n.id} {cc.type.name} {cc.node_id}: refused ({e})")
            return False
        self.log(f"  conf-change {n.id} {cc.type.name} {cc.node_id}")
        return True

    def add_node(self) -> SimNode:
        """Start a fresh replica that is not a member yet (a learner once its add applies)."""
        n = self._new_node(self.next_id)
        self.next_id += 1
        self._start(n, applied=0)
        self.log(f"  new node {n.id}")
        return n

    # -- faults ----------------------------------------------------------------------------
    def crash(self, n: SimNode, why: str = "") -> None:
        self.log(f"  CRASH {n.id}" + (f" ({why})" if why else ""))
        n.raw = None
        n.sm = None
        n.pending = set()

    def restart(self, n: SimNode) -> None:
        assert n.raw is None and not n.retired
        n.life += 1
        snap_index = n.storage.snapshot().metadata.index
        # ``applied=0`` makes the core start applying after the compaction point, which is
        # only right when the log was compacted exactly at the snapshot (``compact`` may keep
        # a few entries before it): then exercise both spellings.
        at_snapshot = n.storage.first_index() - 1 == snap_index
        applied = 0 if at_snapshot and self.rng.random() < 0.5 else snap_index
        self._start(n, applied)
        self.checker.on_restart(n)
        hs = n.storage.hard_state
        self.log(
            f"  RESTART {n.id} (life {n.life}) from snap {snap_index}, "
            f"t{hs.term} v{hs.vote} c{hs.commit} last{n.storage.last_index()}"
        )

    def compact(self, n: SimNode, keep: int) -> None:
        """Snapshot the state machine at its applied index and compact the log up to
        ``keep`` entries before it (what a runtime does to bound its log)."""
        sm, st = n.sm, n.storage
        assert sm is not None
        applied = sm.applied_index
        if applied <= st.snapshot().metadata.index:
            return
        st.create_snapshot(applied, sm.conf_state, sm.digest)
        to = max(applied - keep, st.first_index())
        st.compact(to)
        self.log(f"  snapshot {n.id} at {applied}, compact to {to}")
