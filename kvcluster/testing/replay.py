"""One seed, one randomized schedule: generate it, run it, check it, replay it.

Contract:
- ``run_seed(seed)`` derives everything from the seed: the cluster's knobs
  (``SimParams.from_seed``: size, timeouts, pre-vote, check-quorum, fast backtracking, flow
  control limits) from one stream and the schedule from another. The same seed (and the
  same overrides) always gives the same run, step for step.
- A schedule is a sequence of steps, each one action: tick a node, deliver (or lose) a
  message, process a Ready, propose (single or batch), request a read, transfer leadership,
  change membership, crash, restart, snapshot and compact. The fault "weather" changes from
  epoch to epoch: calm, lossy (drops, duplicates, congestion), partitioned (halves, an
  isolated node or leader, a leader left with a minority, one-way cuts, random cuts),
  crashy, churn (leaders die right after writing), and chaos (all of it); any epoch may
  also bring a fast clock on one node or a slow disk (Readies handled late).
  The invariants are checked after every step.
- Then the weather clears (partitions healed, no loss, every replica up) and liveness is
  asserted: within 20 election timeouts (``40 * election_tick`` rounds of one tick per
  replica) a leader commits a fresh proposal, then every member of the group applies it
  (so every acknowledged proposal is applied everywhere), then linearizable reads are
  served on the leader and through a follower.
- A failure raises ``SimulationFailure`` naming the seed, the step, the last lines of the
  trace and the one command that replays it:
  ``python -m kvcluster.testing.replay --seed N --verbose``.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kvcluster.raft import ConfChange, ConfChangeType, MessageType, StateRole
from kvcluster.testing.cluster import Cluster, ClusterConfig, CrashPoint, SimNode
from kvcluster.testing.invariants import Checker, InvariantViolation

__all__ = ["SimParams", "SimResult", "Simulation", "SimulationFailure", "main", "run_seed"]

_KNOB_SALT = 0x5EED_C0FFEE


@dataclass(slots=True)
class SimParams:
    seed: int
    steps: int
    cluster: ClusterConfig
    membership: bool = True
    # Let a leader propose its own removal or demotion. Off by default: a careful runtime
    # transfers leadership first (see tests/raft/test_sim_regressions.py for why).
    self_removal: bool = False
    max_nodes: int = 7
    min_voters: int = 1
    overrides: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_seed(cls, seed: int, **overrides: Any) -> SimParams:
        """Knobs drawn from the seed; any keyword overrides one (``steps``, ``nodes``,
        ``pre_vote``, ``check_quorum``, ``fast_backtrack``, ``membership``, ``self_removal``,
        ``step_during_write``: never drawn from the seed, so it leaves other knobs alone)."""
        r = random.Random(seed ^ _KNOB_SALT)
        heartbeat = r.choice([1, 1, 1, 2])
        cfg = ClusterConfig(
            nodes=r.choice([1, 2, 3, 3, 3, 4, 5, 5]),
            heartbeat_tick=heartbeat,
            election_tick=heartbeat * r.choice([3, 4]) + r.randrange(3),
            pre_vote=r.random() < 0.5,
            check_quorum=r.random() < 0.5,
            fast_backtrack=r.random() < 0.5,
            max_inflight_msgs=r.choice([1, 2, 4, 256]),
            max_size_per_msg=r.choice([1, 40, 200, 1 << 20]),
            max_committed_size_per_ready=r.choice([1, 60, 1 << 62]),
            unreachable_rate=r.choice([0.0, 0.5]),
        )
        p = cls(seed=seed, steps=r.choice([1000, 1500, 2000]), cluster=cfg)
        p.membership = r.random() < 0.6
        for k, v in overrides.items():
            if v is None:
                continue
            if k == "nodes":
                cfg.nodes = int(v)
            elif k in ("pre_vote", "check_quorum", "fast_backtrack"):
                setattr(cfg, k, bool(v))
            elif k in ("steps", "membership", "self_removal"):
                setattr(p, k, type(getattr(p, k))(v))
            elif k == "step_during_write":
                cfg.step_during_write = float(v)
            else:
                raise TypeError(f"unknown simulation knob {k!r}")
            p.overrides[k] = v
        return p

    def replay_command(self, verbose: bool = True) -> str:
        cmd = f"python -m kvcluster.testing.replay --seed {self.seed}"
        for k, v in sorted(self.overrides.items()):
            flag = "--" + k.replace("_", "-")
            cmd += f" {flag} {int(v) if isinstance(v, bool) else v}"
        return cmd + (" --verbose" if verbose else "")

    def describe(self) -> str:
        c = self.cluster
        return (
            f"seed={self.seed} steps={self.steps} nodes={c.nodes} election={c.election_tick} "
            f"heartbeat={c.heartbeat_tick} pre_vote={c.pre_vote} check_quorum={c.check_quorum} "
            f"fast_backtrack={c.fast_backtrack} inflight={c.max_inflight_msgs} "
            f"msg_size={c.max_size_per_msg} apply_size={c.max_committed_size_per_ready} "
            f"membership={self.membership} self_removal={self.self_removal} "
            f"step_during_write={c.step_during_write}"
        )


@dataclass(slots=True)
class SimResult:
    params: SimParams
    steps: int = 0
    terms: int = 0
    acked: int = 0
    reads: int = 0
    crashes: int = 0
    restarts: int = 0
    snapshots_sent: int = 0
    conf_changes: int = 0
    liveness_rounds: int = 0


class SimulationFailure(AssertionError):
    def __init__(self, params: SimParams, where: str, cause: BaseException, tail: list[str]):
        self.params = params
        self.cause = cause
        lines = [
            f"simulation failed at {where}: {type(cause).__name__}: {cause}",
            f"  {params.describe()}",
        ]
        if tail:
            lines.append("  last steps of the trace:")
            lines.extend("    " + t for t in tail)
        lines.append(f"  replay: {params.replay_command()}")
        super().__init__("\n".join(lines))


@dataclass(slots=True)
class Weather:
    drop_rate: float = 0.0
    dup_rate: float = 0.0
    crash: float = 0.0  # weight of the crash action
    ready_crash: float = 0.0  # chance that a Ready is interrupted by a crash
    partition: str = "none"
    fast_clock: int = 0  # a node whose clock runs fast (it ticks far more often)
    congestion: float = 1.0  # < 1: messages wait longer (fewer deliveries per step)
    eager_ready: float = 0.8  # chance a node handles its Ready right after an input
    leader_crash: float = 0.4  # chance that a crash hits the leader


class Simulation:
    def __init__(self, params: SimParams, trace: Callable[[str], None] | None = None) -> None:
        self.params = params
        self.rng = random.Random(params.seed)
        self.checker = Checker()
        self.cluster = Cluster(params.cluster, self.rng, self.checker, trace)
        self.weather = Weather()
        self.step_no = 0
        self.phase = "setup"
        self.result = SimResult(params)
        self._epoch_end = 0

    # -- the whole run ---------------------------------------------------------------------
    def run(self) -> SimResult:
        c = self.cluster
        self.phase = "schedule"
        for step in range(1, self.params.steps + 1):
            self.step_no = step
            if step >= self._epoch_end:
                self._change_weather()
            self._random_step()
            c.check()
        self.phase = "liveness"
        self._liveness()
        self.checker.check_final(c.nodes.values())
        res = self.result
        res.steps = self.params.steps
        res.terms = len(self.checker.leader_of_term)
        res.acked = len(self.checker.acked)
        res.reads = self.checker.reads_served
        return res

    def where(self) -> str:
        return f"{self.phase} step {self.step_no}"

    # -- weather ---------------------------------------------------------------------------
    def _change_weather(self) -> None:
        r, c = self.rng, self.cluster
        self._epoch_end = self.step_no + r.randrange(30, 150)
        kinds = ["calm", "lossy", "partition", "partition", "partition", "crashy", "churn", "chaos"]
        kind = r.choice(kinds)
        w = Weather()
        if kind in ("lossy", "chaos"):
            w.drop_rate = r.choice([0.05, 0.15, 0.3])
            w.dup_rate = r.choice([0.0, 0.05, 0.2])
        if kind in ("partition", "chaos"):
            w.partition = r.choice(
                ["halves", "isolate", "isolate-leader", "leader-minority", "one-way", "random"]
            )
        if kind in ("crashy", "chaos"):
            w.crash = r.choice([0.3, 1.0])
            w.ready_crash = r.choice([0.0, 0.02, 0.05])
        if kind == "churn":  # leaders keep dying, mostly right after writing something
            w.crash = 1.5
            w.leader_crash = 0.7
            w.ready_crash = 0.03
        if kind in ("lossy", "chaos") or r.random() < 0.2:
            w.congestion = r.choice([0.3, 0.6])
        if r.random() < 0.25:  # a slow disk: inputs pile up between Readies
            w.eager_ready = r.choice([0.1, 0.3])
        if r.random() < 0.3:
            w.fast_clock = r.choice([n.id for n in c.nodes.values()])
        self.weather = w
        net = c.net
        net.drop_rate, net.dup_rate = w.drop_rate, w.dup_rate
        net.heal()
        ids = [n.id for n in c.nodes.values() if not n.retired]
        if w.partition == "halves" and len(ids) > 1:
            r.shuffle(ids)
            k = r.randrange(1, len(ids))
            net.split([ids[:k], ids[k:]])
        elif w.partition == "isolate":
            victim = r.choice(ids)
            net.isolate(victim, ids)
        elif w.partition == "isolate-leader":
            leaders = c.leaders()
            victim = leaders[0].id if leaders else r.choice(ids)
            net.isolate(victim, ids)
        elif w.partition == "leader-minority" and len(ids) > 2:
            # The leader keeps a minority (it may go on taking proposals it cannot commit).
            leaders = c.leaders()
            head = leaders[0].id if leaders else r.choice(ids)
            rest = [i for i in ids if i != head]
            r.shuffle(rest)
            k = (len(ids) - 1) // 2
            net.split([[head, *rest[:k]], rest[k:]])
        elif w.partition == "one-way":
            for _ in range(r.randrange(1, 4)):
                net.cut(r.choice(ids), r.choice(ids))
        elif w.partition == "random":
            for a in ids:
                for b in ids:
                    if r.random() < 0.3:
                        net.cut(a, b)
        c.log(
            f"#{self.step_no} weather {kind}: drop={w.drop_rate} dup={w.dup_rate} "
            f"crash={w.crash}/{w.ready_crash} congestion={w.congestion} eager={w.eager_ready} "
            f"fast_clock={w.fast_clock} cuts={net.describe_cuts()}"
        )

    # -- one random step -------------------------------------------------------------------
    def _random_step(self) -> None:
        r, c = self.rng, self.cluster
        live = c.live()
        down = c.down()
        on = 1.0 if live else 0.0
        actions: list[tuple[float, Callable[[list[SimNode]], None]]] = [
            ((35.0 + len(c.net.inflight)) * self.weather.congestion, self._do_deliver),
            (30.0 * on, self._do_tick),
            (10.0 * on, self._do_ready),
            (7.0 * on, self._do_propose),
            (2.0 * on, self._do_read),
            (0.6 * on, self._do_transfer),
            (0.2 * on, self._do_campaign),
            (3.0 * on if self.params.membership else 0.0, self._do_conf_change),
            (self.weather.crash * on, self._do_crash),
            (1.5 if down else 0.0, self._do_restart),
            (3.0 * on, self._do_compact),
        ]
        total = sum(w for w, _ in actions)
        x = r.random() * total
        for w, act in actions:
            x -= w
            if x < 0:
                act(live)
                return
        actions[0][1](live)

    def _log(self, what: str) -> None:
        self.cluster.log(f"#{self.step_no} {what}")

    def _maybe_ready(self, n: SimNode | None) -> None:
        """The runtime usually processes a Ready right after the input that caused it."""
        if n is None or n.raw is None or self.rng.random() >= self.weather.eager_ready:
            return
        self._ready(n)

    def _ready(self, n: SimNode) -> None:
        crash_at = None
        if self.weather.ready_crash and self.rng.random() < self.weather.ready_crash:
            crash_at = self.rng.choice(list(CrashPoint))
        if not self.cluster.handle_ready(n, crash_at):
            self.result.crashes += 1

    def _do_deliver(self, live: list[SimNode]) -> None:
        self._log("deliver")
        picked = self.cluster.net.pick()
        if picked is None:
            return
        env, lost = picked
        if env.msg.type == MessageType.SNAP and not lost:
            self.result.snapshots_sent += 1
        self._maybe_ready(self.cluster.deliver(env, lost))

    def _do_tick(self, live: list[SimNode]) -> None:
        fast = self.cluster.nodes.get(self.weather.fast_clock)
        if fast is not None and fast.up and self.rng.random() < 0.5:
            n = fast
        else:
            n = self.rng.choice(live)
        self._log(f"tick {n.id}")
        self.cluster.tick(n)
        self._maybe_ready(n)

    def _do_ready(self, live: list[SimNode]) -> None:
        ready = [n for n in live if n.raw is not None and n.raw.has_ready()]
        if ready:
            n = self.rng.choice(ready)
            self._log(f"ready {n.id}")
            self._ready(n)

    def _target(self, live: list[SimNode]) -> SimNode:
        """Usually a leader: the newest, or any (a deposed leader cut off in a minority still
        takes proposals, which is what makes logs diverge); sometimes anyone."""
        r = self.rng
        leaders = self.cluster.leaders()
        if leaders and r.random() < 0.9:
            return leaders[0] if r.random() < 0.5 else r.choice(leaders)
        return r.choice(live)

    def _do_propose(self, live: list[SimNode]) -> None:
        n = self._target(live)
        count = 1 if self.rng.random() < 0.7 else self.rng.randrange(2, 6)
        self._log(f"propose x{count} at {n.id}")
        self.cluster.propose(n, count)
        crash_p = 0.3 if self.weather.leader_crash > 0.5 else 0.1
        if self.weather.crash and n.role() == StateRole.LEADER and self.rng.random() < crash_p:
            # A leader that dies right after writing entries nobody else has: the seed of
            # diverging logs (the paper's Figure 8 is made of these).
            if not self.cluster.handle_ready(n, CrashPoint.BEFORE_SEND):
                self.result.crashes += 1
            return
        self._maybe_ready(n)

    def _do_read(self, live: list[SimNode]) -> None:
        n = self.rng.choice(live) if self.rng.random() < 0.5 else self._target(live)
        self._log(f"read at {n.id}")
        self.cluster.read_index(n)
        self._maybe_ready(n)

    def _do_transfer(self, live: list[SimNode]) -> None:
        n = self._target(live)
        assert n.raw is not None
        voters = sorted(n.raw.raft.tracker.voters) or [n.id]
        target = self.rng.choice(voters)
        self._log(f"transfer at {n.id} to {target}")
        self.cluster.transfer_leader(n, target)
        self._maybe_ready(n)

    def _do_campaign(self, live: list[SimNode]) -> None:
        n = self.rng.choice(live)
        assert n.raw is not None
        self._log(f"campaign {n.id}")
        n.raw.campaign()
        self._maybe_ready(n)

    def _do_conf_change(self, live: list[SimNode]) -> None:
        r, c = self.rng, self.cluster
        leaders = c.leaders()
        if not leaders:
            return
        leader = leaders[0]
        assert leader.raw is not None
        tr = leader.raw.raft.tracker
        voters, learners = sorted(tr.voters), sorted(tr.learners)
        members = set(voters) | set(learners)
        outsiders = [n.id for n in c.nodes.values() if not n.retired and n.id not in members]
        options: list[ConfChange] = []
        if outsiders or sum(1 for n in c.nodes.values() if not n.retired) < self.params.max_nodes:
            new_id = r.choice(outsiders) if outsiders and r.random() < 0.5 else 0
            options.append(ConfChange(ConfChangeType.ADD_LEARNER, new_id))
        options += [ConfChange(ConfChangeType.ADD_VOTER, i) for i in learners]
        if len(voters) > self.params.min_voters:
            options += [ConfChange(ConfChangeType.ADD_LEARNER, i) for i in voters]
            options += [ConfChange(ConfChangeType.REMOVE_NODE, i) for i in voters]
        options += [ConfChange(ConfChangeType.REMOVE_NODE, i) for i in learners]
        if not options:
            return
        cc = r.choice(options)
        if cc.node_id == leader.id and not self.params.self_removal:
            others = [v for v in voters if v != leader.id]
            if others:  # what a careful runtime does: move leadership away first
                self._log(f"conf-change {cc.type.name} {cc.node_id}: transfer leadership first")
                c.transfer_leader(leader, r.choice(others))
                self._maybe_ready(leader)
            return
        if cc.node_id == 0:
            cc = ConfChange(ConfChangeType.ADD_LEARNER, c.add_node().id)
        self._log(f"conf-change at {leader.id}: {cc.type.name} {cc.node_id}")
        if c.propose_conf_change(leader, cc):
            self.result.conf_changes += 1
        self._maybe_ready(leader)

    def _do_crash(self, live: list[SimNode]) -> None:
        leaders = self.cluster.leaders()
        hit_leader = leaders and self.rng.random() < self.weather.leader_crash
        n = leaders[0] if hit_leader else self.rng.choice(live)
        self._log(f"crash {n.id}")
        self.cluster.crash(n)
        self.result.crashes += 1

    def _do_restart(self, live: list[SimNode]) -> None:
        n = self.rng.choice(self.cluster.down())
        self._log(f"restart {n.id}")
        self.cluster.restart(n)
        self.result.restarts += 1
        self._maybe_ready(n)

    def _do_compact(self, live: list[SimNode]) -> None:
        n = self.rng.choice(live)
        keep = self.rng.choice([0, 0, 0, 1, 3, 10])
        self._log(f"compact {n.id} keep {keep}")
        self.cluster.compact(n, keep)

    # -- liveness --------------------------------------------------------------------------
    def _until(self, goal: Callable[[int], bool], what: str) -> int:
        """Run calm rounds (one tick per replica each) until ``goal(round)`` holds; fail
        after 20 election timeouts, counting the longest randomized timeout (2 *
        election_tick): with a small election_tick there are few distinct timeouts, and a
        replica with a stale log that keeps starting elections (no pre-vote) resets the
        others' timers, so a run of unlucky draws is legitimately long."""
        c = self.cluster
        budget = 20 * 2 * self.params.cluster.election_tick
        for rounds in range(1, budget + 1):
            self.step_no += 1
            c.round()
            if goal(rounds):
                return rounds
        progress = "; ".join(
            f"leader {n.id} sees {sorted(n.raw.raft.tracker.progress.items())}"
            for n in c.leaders()
            if n.raw is not None
        )
        raise InvariantViolation(
            f"liveness: {what} within {budget} rounds (20 election timeouts) after the "
            f"network healed and every replica came back: {c.describe()}"
            + (f"; {progress}" if progress else "")
        )

    def _leader(self) -> SimNode | None:
        leaders = self.cluster.leaders()
        return leaders[0] if leaders else None

    def _liveness(self) -> None:
        c, chk = self.cluster, self.checker
        c.net.heal()
        c.net.drop_rate = c.net.dup_rate = 0.0
        for n in c.down():
            c.restart(n)
        c.log(f"#{self.step_no} liveness: the network heals and every replica is up")

        # 1. A leader is elected and commits (and applies) a fresh proposal.
        proposed: set[bytes] = set()
        asked: list[tuple[int, int, int]] = []  # (leader, life, term) last proposed to

        def committed_fresh(_: int) -> bool:
            if proposed & chk.acked.keys():
                return True
            leader = self._leader()
            if leader is not None and leader.raw is not None:
                who = (leader.id, leader.life, leader.raw.raft.term)
                if who not in asked[-1:]:
                    # (Re)propose to each new leadership: the last one may have been lost.
                    before = set(leader.pending)
                    c.propose(leader, 1)
                    if leader.pending - before:
                        proposed.update(leader.pending - before)
                        asked.append(who)
                    c.drain(leader)
            return False

        self.result.liveness_rounds = self._until(committed_fresh, "no fresh proposal committed")
        target = max(n.raw.raft.log.committed for n in c.live() if n.raw is not None)
        acked = max(chk.acked.values(), default=0)
        if acked > target:
            raise InvariantViolation(
                f"index {acked} was acknowledged but the highest commit index is {target}"
            )

        # 2. A leader's members all apply it, so every acknowledged proposal is everywhere.
        def members() -> list[SimNode]:
            leader = self._leader()
            if leader is None or leader.raw is None:
                return []
            tr = leader.raw.raft.tracker
            return [c.nodes[i] for i in sorted(tr.voters | tr.learners) if not c.nodes[i].retired]

        def all_applied(_: int) -> bool:
            ms = members()
            return bool(ms) and all(m.sm is not None and m.sm.applied_index >= target for m in ms)

        if not all_applied(0):
            self._until(all_applied, f"a leader's members did not all apply index {target}")
        leader = self._leader()
        assert leader is not None

        # 3. Linearizable reads are served, at the leader and through a follower.
        followers = [m for m in members() if m is not leader and m.up]
        for reader in [leader, *followers[:1]]:
            served = chk.reads_served

            def read_served(rounds: int, reader: SimNode = reader, served: int = served) -> bool:
                if chk.reads_served > served:
                    return True
                if rounds % self.params.cluster.election_tick == 1 and reader.up:
                    c.read_index(reader)  # (re)issue: a leader change drops pending reads
                    c.drain(reader)
                return False

            self._until(read_served, f"a read at node {reader.id} was not served")


def run_seed(seed: int, trace: Callable[[str], None] | None = None, **overrides: Any) -> SimResult:
    """Run the schedule of ``seed``; raise ``SimulationFailure`` if any invariant breaks."""
    params = SimParams.from_seed(seed, **overrides)
    sim = Simulation(params, trace)
    try:
        return sim.run()
    except Exception as e:
        if trace is not None:
            raise SimulationFailure(params, sim.where(), e, []) from e
        # Replay the same seed with tracing on to show how it got there.
        tail: deque[str] = deque(maxlen=40)
        replay = Simulation(params, tail.append)
        with contextlib.suppress(Exception):
            replay.run()
        raise SimulationFailure(params, sim.where(), e, list(tail)) from e


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m kvcluster.testing.replay",
        description="Run (replay) the randomized Raft simulation of one seed.",
    )
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--verbose", "-v", action="store_true", help="print the step-by-step trace")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--nodes", type=int)
    for knob in ("pre-vote", "check-quorum", "fast-backtrack", "membership", "self-removal"):
        ap.add_argument(f"--{knob}", type=int, choices=(0, 1))
    ap.add_argument(
        "--step-during-write",
        type=float,
        help="probability that a replica steps messages while its Ready is written",
    )
    args = ap.parse_args(argv)
    overrides = {
        "steps": args.steps,
        "nodes": args.nodes,
        "pre_vote": args.pre_vote,
        "check_quorum": args.check_quorum,
        "fast_backtrack": args.fast_backtrack,
        "membership": args.membership,
        "self_removal": args.self_removal,
        "step_during_write": args.step_during_write,
    }
    params = SimParams.from_seed(args.seed, **overrides)
    print(params.describe())
    trace = print if args.verbose else None
    try:
        res = run_seed(args.seed, trace, **overrides)
    except SimulationFailure as e:
        print(e, file=sys.stderr)
        return 1
    print(
        f"ok: {res.steps} steps, {res.terms} terms with a leader, {res.acked} proposals "
        f"acknowledged, {res.reads} reads served, {res.crashes} crashes, "
        f"{res.snapshots_sent} snapshots delivered, {res.conf_changes} conf changes proposed, "
        f"liveness in {res.liveness_rounds} rounds"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
