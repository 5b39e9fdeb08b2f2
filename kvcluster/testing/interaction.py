"""Readable protocol scenarios: a tiny command language over a set of in-memory RawNodes.

Contract:
- A scenario file (``tests/raft/testdata/*.txt``) is a sequence of blocks::

      command arg key=value ...
      ----
      the trace the command produced

  ``run_script`` executes the commands and returns the same text with freshly produced
  traces, so a test compares it with the checked-in file and ``KV_REWRITE=1`` rewrites it
  (STYLE.md rule 12, after etcd-io/raft's datadriven ``interaction_test.go``).
- Everything is deterministic: each node's random source is seeded by its id, messages are
  delivered in the order they were sent, nodes are processed in id order.
- Ready handling keeps the persist → send → apply → advance order; ``crash`` forgets what a
  node never persisted, ``restart`` rebuilds it from its MemoryStorage.
"""

from __future__ import annotations

import random
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from kvcluster.errors import KvClusterError
from kvcluster.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    Entry,
    EntryType,
    MemoryStorage,
    Message,
    MessageType,
    RawNode,
    Ready,
)

__all__ = ["InteractionEnv", "format_message", "run_script"]


def _fmt_entries(ents: list[Entry]) -> str:
    parts = []
    for e in ents:
        if e.type == EntryType.CONF_CHANGE:
            cc = ConfChange.decode(e.data)
            parts.append(f"{e.term}/{e.index} {cc.type.name.lower()}({cc.node_id})")
        elif e.data:
            parts.append(f"{e.term}/{e.index} {e.data.decode(errors='replace')}")
        else:
            parts.append(f"{e.term}/{e.index}")
    return "[" + ", ".join(parts) + "]"


def format_message(m: Message) -> str:
    t = m.type
    s = f"{m.from_}->{m.to} {t.name} term={m.term}"
    if t == MessageType.APP:
        s += f" prev={m.log_term}/{m.index} commit={m.commit} entries={_fmt_entries(m.entries)}"
    elif t == MessageType.APP_RESP:
        s += f" index={m.index}"
        if m.reject:
            s += f" REJECT hint={m.reject_hint} conflict_term={m.log_term}"
    elif t in (MessageType.VOTE, MessageType.PRE_VOTE):
        s += f" last={m.log_term}/{m.index}"
        if m.context:
            s += f" ctx={m.context.decode()}"
    elif t in (MessageType.VOTE_RESP, MessageType.PRE_VOTE_RESP):
        s += " REJECT" if m.reject else " granted"
    elif t in (MessageType.HEARTBEAT, MessageType.HEARTBEAT_RESP):
        if t == MessageType.HEARTBEAT:
            s += f" commit={m.commit}"
        if m.read_seq:
            s += f" read_seq={m.read_seq}"
    elif t == MessageType.SNAP and m.snapshot is not None:
        md = m.snapshot.metadata
        s += f" snapshot={md.term}/{md.index} voters={list(md.conf_state.voters)}"
    elif t in (MessageType.READ_INDEX, MessageType.READ_INDEX_RESP):
        s += f" index={m.index} ctx={m.context.decode()}"
    return s


@dataclass
class _Node:
    id: int
    config: Config
    storage: MemoryStorage
    raw: RawNode | None
    applied: list[Entry] = field(default_factory=list)


def _b(v: str) -> bool:
    return v.lower() in ("1", "true", "yes", "on")


class InteractionEnv:
    def __init__(self) -> None:
        self.nodes: dict[int, _Node] = {}
        self.inbox: dict[int, list[Message]] = {}
        self.cut: set[tuple[int, int]] = set()
        self.out: list[str] = []
        self.delivered: list[Message] = []  # every message a live node stepped, in order

    # -- helpers ---------------------------------------------------------------------------
    def p(self, line: str) -> None:
        self.out.append(line)

    def raw(self, node_id: int) -> RawNode:
        raw = self.nodes[node_id].raw
        if raw is None:
            raise KvClusterError(f"node {node_id} is crashed")
        return raw

    def _new_raw(self, n: _Node) -> RawNode:
        n.config.applied = n.storage.snapshot().metadata.index
        return RawNode(n.config, n.storage, random.Random(n.id))

    def _handle_ready(self, node_id: int) -> None:
        n = self.nodes[node_id]
        raw = self.raw(node_id)
        rd: Ready = raw.ready()
        self.p(f"> {node_id} handling Ready")
        if rd.soft_state is not None:
            ss = rd.soft_state
            self.p(f"  role={ss.role.name} leader={ss.leader_id}")
        if rd.hard_state is not None:
            hs = rd.hard_state
            self.p(f"  hard state: term={hs.term} vote={hs.vote} commit={hs.commit}")
        if rd.snapshot is not None:
            md = rd.snapshot.metadata
            self.p(f"  snapshot: {md.term}/{md.index}")
            n.storage.apply_snapshot(rd.snapshot)
        if rd.entries:
            self.p(f"  persist: {_fmt_entries(rd.entries)}")
            n.storage.append(rd.entries)
        if rd.hard_state is not None:
            n.storage.set_hard_state(rd.hard_state)
        for m in rd.messages:
            self.p(f"  send: {format_message(m)}")
            self.inbox.setdefault(m.to, []).append(m)
        if rd.committed_entries:
            self.p(f"  apply: {_fmt_entries(rd.committed_entries)}")
            for e in rd.committed_entries:
                n.applied.append(e)
                if e.type == EntryType.CONF_CHANGE:
                    cs = raw.apply_conf_change(ConfChange.decode(e.data))
                    self.p(f"  conf: voters={list(cs.voters)} learners={list(cs.learners)}")
        for rs in rd.read_states:
            self.p(f"  read state: index={rs.index} ctx={rs.request_ctx.decode()}")
        raw.advance(rd)

    def _deliver(self, node_id: int) -> bool:
        msgs = self.inbox.pop(node_id, [])
        if not msgs:
            return False
        self.p(f"> {node_id} receiving messages")
        raw = self.nodes[node_id].raw
        for m in msgs:
            if raw is None or (m.from_, m.to) in self.cut:
                self.p(f"  {format_message(m)} DROPPED")
                continue
            self.p(f"  {format_message(m)}")
            self.delivered.append(m)
            raw.step(m)
        return True

    def _ids(self, args: list[str]) -> list[int]:
        return [int(a) for a in args] if args else sorted(self.nodes)

    # -- commands --------------------------------------------------------------------------
    def cmd_add_nodes(self, args: list[str], kw: dict[str, str]) -> None:
        count = int(args[0])
        voters = tuple(int(x) for x in kw.get("voters", "").split(",") if x)
        learners = tuple(int(x) for x in kw.get("learners", "").split(",") if x)
        start = max(self.nodes, default=0) + 1
        for node_id in range(start, start + count):
            cfg = Config(
                id=node_id,
                election_tick=int(kw.get("election", "10")),
                heartbeat_tick=int(kw.get("heartbeat", "1")),
                pre_vote=_b(kw.get("prevote", "false")),
                check_quorum=_b(kw.get("checkquorum", "false")),
                fast_backtrack=_b(kw.get("fastbacktrack", "true")),
                max_inflight_msgs=int(kw.get("inflight", "256")),
                read_only_lease_based=_b(kw.get("lease", "false")),
                max_size_per_msg=int(kw.get("maxsize", str(1 << 20))),
            )
            st = MemoryStorage(voters=voters, learners=learners)
            n = _Node(node_id, cfg, st, None)
            n.raw = self._new_raw(n)
            self.nodes[node_id] = n
            self.p(f"node {node_id}: voters={list(voters)} learners={list(learners)}")

    def cmd_set_log(self, args: list[str], kw: dict[str, str]) -> None:
        """set-log ID terms=1,1,4 [term=T]: give a node a persisted log, then restart it."""
        node_id = int(args[0])
        n = self.nodes[node_id]
        terms = [int(x) for x in kw["terms"].split(",") if x]
        n.storage.append([Entry(t, i + 1) for i, t in enumerate(terms)])
        hs = n.storage.hard_state
        hs.term = int(kw.get("term", str(max(terms, default=0))))
        n.storage.set_hard_state(hs)
        n.raw = self._new_raw(n)
        self.p(f"node {node_id}: log={terms} term={hs.term}")

    def cmd_campaign(self, args: list[str], kw: dict[str, str]) -> None:
        self.raw(int(args[0])).campaign()

    def cmd_tick(self, args: list[str], kw: dict[str, str]) -> None:
        count = int(kw.get("n", "1"))
        for node_id in self._ids(args):
            if self.nodes[node_id].raw is not None:
                for _ in range(count):
                    self.raw(node_id).tick()

    def cmd_propose(self, args: list[str], kw: dict[str, str]) -> None:
        self.raw(int(args[0])).propose_many([a.encode() for a in args[1:]])

    def cmd_propose_conf_change(self, args: list[str], kw: dict[str, str]) -> None:
        kind = {
            "add-voter": ConfChangeType.ADD_VOTER,
            "add-learner": ConfChangeType.ADD_LEARNER,
            "remove": ConfChangeType.REMOVE_NODE,
        }[args[1]]
        self.raw(int(args[0])).propose_conf_change(ConfChange(kind, int(args[2])))

    def cmd_read_index(self, args: list[str], kw: dict[str, str]) -> None:
        self.raw(int(args[0])).read_index(args[1].encode())

    def cmd_transfer_leader(self, args: list[str], kw: dict[str, str]) -> None:
        self.raw(int(args[0])).transfer_leader(int(args[1]))

    def cmd_process_ready(self, args: list[str], kw: dict[str, str]) -> None:
        for node_id in self._ids(args):
            if self.nodes[node_id].raw is not None and self.raw(node_id).has_ready():
                self._handle_ready(node_id)

    def cmd_deliver_msgs(self, args: list[str], kw: dict[str, str]) -> None:
        for node_id in self._ids(args):
            self._deliver(node_id)

    def cmd_stabilize(self, args: list[str], kw: dict[str, str]) -> None:
        ids = self._ids(args)
        moved = True
        while moved:
            moved = False
            for node_id in ids:
                raw = self.nodes[node_id].raw
                if raw is not None and raw.has_ready():
                    self._handle_ready(node_id)
                    moved = True
            for node_id in ids:
                moved = self._deliver(node_id) or moved

    def cmd_partition(self, args: list[str], kw: dict[str, str]) -> None:
        """partition 1 2 | 3: cut every link between the groups (both ways)."""
        groups: list[list[int]] = [[]]
        for a in args:
            if a == "|":
                groups.append([])
            else:
                groups[-1].append(int(a))
        for i, g in enumerate(groups):
            for h in groups[i + 1 :]:
                for a_ in g:
                    for b_ in h:
                        self.cut.add((a_, b_))
                        self.cut.add((b_, a_))

    def cmd_cut(self, args: list[str], kw: dict[str, str]) -> None:
        """cut FROM TO: drop messages in one direction only."""
        self.cut.add((int(args[0]), int(args[1])))

    def cmd_heal(self, args: list[str], kw: dict[str, str]) -> None:
        self.cut.clear()

    def cmd_crash(self, args: list[str], kw: dict[str, str]) -> None:
        self.nodes[int(args[0])].raw = None

    def cmd_restart(self, args: list[str], kw: dict[str, str]) -> None:
        n = self.nodes[int(args[0])]
        n.raw = self._new_raw(n)
        n.applied = [e for e in n.applied if e.index <= n.config.applied]

    def cmd_compact(self, args: list[str], kw: dict[str, str]) -> None:
        """compact ID INDEX: snapshot the node's state machine at INDEX and drop the log."""
        node_id, index = int(args[0]), int(args[1])
        n = self.nodes[node_id]
        raw = self.raw(node_id)
        cs = raw.raft.tracker.conf_state()
        data = b",".join(e.data for e in n.applied if e.index <= index)
        n.storage.create_snapshot(index, cs, data)
        n.storage.compact(index)
        self.p(f"node {node_id}: snapshot at {index}, first index {n.storage.first_index()}")

    def cmd_status(self, args: list[str], kw: dict[str, str]) -> None:
        for node_id in self._ids(args):
            raw = self.nodes[node_id].raw
            if raw is None:
                self.p(f"{node_id}: crashed")
                continue
            s = raw.status()
            line = (
                f"{node_id}: {s.role.name} term={s.term} leader={s.leader_id} "
                f"commit={s.commit} applied={s.applied} last={s.last_index}"
            )
            self.p(line)
            for pid, pr in sorted(s.progress.items()):
                self.p(f"  {pid}: {pr!r}")

    def cmd_raft_log(self, args: list[str], kw: dict[str, str]) -> None:
        for node_id in self._ids(args):
            raw = self.raw(node_id)
            ents = raw.raft.log.all_entries()
            self.p(f"{node_id}: {_fmt_entries(ents) if ents else '[]'}")

    # -- driver ----------------------------------------------------------------------------
    def run(self, line: str) -> str:
        self.out = []
        words = shlex.split(line)
        name, rest = words[0], words[1:]
        args = [w for w in rest if "=" not in w]
        kw = dict(w.split("=", 1) for w in rest if "=" in w)
        fn: Callable[[list[str], dict[str, str]], None] | None = getattr(
            self, "cmd_" + name.replace("-", "_"), None
        )
        if fn is None:
            raise KvClusterError(f"unknown command {name!r}")
        try:
            fn(args, kw)
        except KvClusterError as e:
            self.p(f"error: {type(e).__name__}: {e}")
        return "\n".join(self.out) if self.out else "ok"


def run_script(text: str) -> str:
    """Run a scenario script; return it with every command's output regenerated."""
    env = InteractionEnv()
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            out.append(line)
            i += 1
            continue
        # A command, then "----", then its old output up to a blank line.
        out.append(line)
        i += 1
        if i < len(lines) and lines[i] == "----":
            i += 1
            while i < len(lines) and lines[i].strip():
                i += 1
        out.append("----")
        out.append(env.run(line))
    return "\n".join(out).rstrip("\n") + "\n"
