"""The nemesis without a cluster: schedules from the seed, partition topologies, the loop that
carries a schedule out (against a fake `ClusterControl`), and fault periods from its log."""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Mapping, Sequence

import pytest
from jepsen_lite.nemesis import (
    FAULT_KINDS,
    RESHARD,
    TOPOLOGIES,
    Layout,
    Migrating,
    Nemesis,
    PlannedFault,
    ReshardResult,
    choose_moves,
    grudges,
    parse_kinds,
    periods,
    plan,
    slot_ranges,
)


def hears(cut: Mapping[int, frozenset[int]], a: int, b: int) -> bool:
    """Whether `a` receives what `b` sends."""
    return b not in cut[a]


@pytest.mark.parametrize("nodes", [3, 4, 5, 7])
@pytest.mark.parametrize("seed", range(5))
def test_topologies_put_the_target_where_they_say(nodes: int, seed: int) -> None:
    ids = list(range(1, nodes + 1))
    target = ids[seed % nodes]
    majority = nodes // 2 + 1
    for topology in TOPOLOGIES:
        cut = grudges(topology, ids, target, random.Random(seed))
        assert set(cut) == set(ids), topology
        assert all(n not in cut[n] for n in ids), "nobody drops itself"
        if topology == "isolated":
            assert cut[target] == set(ids) - {target}
            assert all(cut[n] == {target} for n in ids if n != target)
        elif topology == "halves":
            side = {n for n in ids if hears(cut, target, n)}
            assert target in side and len(side) == nodes // 2
            assert all(cut[n] == set(ids) - side for n in side)
            assert all(cut[n] == side for n in ids if n not in side)
        elif topology == "bridge":
            bridges = [n for n in ids if not cut[n]]
            assert len(bridges) == 1 and bridges[0] != target
            bridge = bridges[0]
            assert all(hears(cut, bridge, n) and hears(cut, n, bridge) for n in ids)
            side_a = {n for n in ids if n != bridge and hears(cut, target, n)}
            side_b = set(ids) - side_a - {bridge}
            assert target in side_a and side_b
            assert all(
                not hears(cut, a, b) and not hears(cut, b, a) for a in side_a for b in side_b
            )
        else:  # majorities-ring: each hears a majority (itself included), all different
            heard = {n: frozenset(set(ids) - cut[n]) for n in ids}
            assert all(len(h) == majority and n in h for n, h in heard.items())
            assert len(set(heard.values())) == nodes


def test_grudges_refuse_what_cannot_be_done() -> None:
    with pytest.raises(ValueError, match="at least 3 nodes"):
        grudges("bridge", [1, 2], 1, random.Random(0))
    with pytest.raises(ValueError, match="not one of the nodes"):
        grudges("halves", [1, 2, 3], 9, random.Random(0))
    with pytest.raises(ValueError, match="unknown topology"):
        grudges("ring", [1, 2, 3], 1, random.Random(0))


def test_plan_is_a_function_of_the_seed_and_heals_before_the_end() -> None:
    for seed in range(30):
        a = plan(random.Random(seed), FAULT_KINDS, 60, [1, 2, 3], 3)
        b = plan(random.Random(seed), FAULT_KINDS, 60, [1, 2, 3], 3)
        assert a == b and a
        end = 0.0
        for fault in a:
            if fault.kind == RESHARD:
                continue  # on a timeline of their own: test_plan_with_reshards
            assert fault.at >= end, "one fault at a time"
            assert fault.duration >= 1.0
            assert (fault.topology is not None) == (fault.kind == "partition")
            end = fault.at + fault.duration
        assert end <= 60 - 0.5
    kinds = {f.kind for s in range(30) for f in plan(random.Random(s), FAULT_KINDS, 60, [1, 2], 3)}
    assert kinds == set(FAULT_KINDS)


def test_plan_for_two_nodes_uses_two_node_topologies_only() -> None:
    topologies = {
        f.topology for s in range(20) for f in plan(random.Random(s), ["partition"], 60, [1], 2)
    }
    assert topologies == {"halves", "isolated"}
    assert plan(random.Random(0), [], 60, [1], 3) == []
    with pytest.raises(ValueError, match="at least 2 nodes"):
        plan(random.Random(0), ["partition"], 60, [1], 1)


def test_parse_kinds() -> None:
    assert parse_kinds("partition,kill") == ("partition", "kill")
    assert parse_kinds(" pause , pause ") == ("pause",)
    assert parse_kinds("none") == () == parse_kinds("")
    assert parse_kinds("partition,kill,pause,reshard") == FAULT_KINDS
    with pytest.raises(ValueError, match="unknown nemesis bogus"):
        parse_kinds("kill,bogus")


class FakeControl:
    """A cluster that only records what the nemesis asked of it."""

    def __init__(self, leader: int | None = 2) -> None:
        self.node_ids: Sequence[int] = [1, 2, 3]
        self.leader = leader
        self.calls: list[tuple[str, object]] = []

    def leader_of(self, group: int) -> int | None:
        return self.leader

    def led_groups(self, node: int) -> list[int]:
        return [0, 1] if node == self.leader else []

    def partition(self, grudges: Mapping[int, frozenset[int]]) -> None:
        self.calls.append(("partition", {k: sorted(v) for k, v in grudges.items()}))

    def heal_network(self) -> None:
        self.calls.append(("heal", None))

    def kill(self, node: int) -> None:
        self.calls.append(("kill", node))

    def start(self, node: int) -> None:
        self.calls.append(("start", node))

    def pause(self, node: int) -> None:
        self.calls.append(("pause", node))

    def resume(self, node: int) -> None:
        self.calls.append(("resume", node))


def test_nemesis_aims_at_the_leader_and_undoes_each_fault() -> None:
    control = FakeControl(leader=2)
    log: list[dict[str, object]] = []
    schedule = [
        PlannedFault(0.0, "kill", 0.01, 1, None, 1),
        PlannedFault(0.0, "pause", 0.01, 1, None, 2),
        PlannedFault(0.0, "partition", 0.01, 1, "isolated", 3),
    ]
    nemesis = Nemesis(control, log.append)
    nemesis.run(schedule, threading.Event())
    nemesis.heal_all()
    assert control.calls[:6] == [
        ("kill", 2),
        ("start", 2),
        ("pause", 2),
        ("resume", 2),
        ("partition", {1: [2], 2: [1, 3], 3: [2]}),
        ("heal", None),
    ]
    assert control.calls[6] == ("heal", None)  # heal_all, then resume and start every node
    assert [e["type"] for e in log] == ["start", "stop"] * 3 + ["heal-all"]
    assert log[0]["led_groups"] == [0, 1] and log[0]["why"] == "leader"
    times = [t for e in log if isinstance(t := e["time"], int)]
    assert len(times) == len(log) and times == sorted(times)
    spans = periods(log)
    assert [p.kind for p in spans] == ["kill", "pause", "partition"]
    assert all(p.end is not None and p.end >= p.start for p in spans)


def test_nemesis_without_a_known_leader_draws_a_node_from_the_seed() -> None:
    picks = set()
    for seed in range(20):
        control = FakeControl(leader=None)
        Nemesis(control, lambda e: None).run(
            [PlannedFault(0.0, "kill", 0.0, 1, None, seed)], threading.Event()
        )
        picks.add(control.calls[0][1])
    assert picks == {1, 2, 3}


def test_nemesis_stops_early_and_heal_all_ends_the_open_fault() -> None:
    control = FakeControl()
    log: list[dict[str, object]] = []
    stop = threading.Event()
    stop.set()
    nemesis = Nemesis(control, log.append)
    nemesis.run([PlannedFault(5.0, "kill", 5.0, 1, None, 0)], stop)
    assert control.calls == []  # stopped before the first fault was due
    never_healed = periods([{"type": "start", "id": 1, "fault": "kill", "target": 1, "time": 5}])
    assert [(p.start, p.end) for p in never_healed] == [(5, None)]
    open_ = periods(
        [
            {"type": "start", "id": 1, "fault": "pause", "target": 3, "time": 5},
            {"type": "heal-all", "time": 9},
        ]
    )
    assert [(p.start, p.end, p.kind) for p in open_] == [(5, 9, "pause")]


# -- reshards ---------------------------------------------------------------------------------


def test_plan_with_reshards() -> None:
    for seed in range(30):
        both = plan(random.Random(seed), ["partition", "kill", RESHARD], 30, [1, 2, 3], 3)
        assert both == plan(random.Random(seed), ["partition", "kill", RESHARD], 30, [1, 2, 3], 3)
        assert [f.at for f in both] == sorted(f.at for f in both), "in order of their start"
        others = [f for f in both if f.kind != RESHARD]
        assert others == plan(random.Random(seed), ["partition", "kill"], 30, [1, 2, 3], 3), (
            "adding reshards leaves the other faults as they were"
        )
        reshards = [f for f in both if f.kind == RESHARD]
        assert len(reshards) >= 3
        assert 3.0 <= reshards[0].at <= 4.0  # within a second after the warmup
        assert reshards[-1].at <= 30 - 0.5  # the last one starts before the heal
        assert all(b.at - a.at >= 3.0 for a, b in itertools.pairwise(reshards))
        for f in reshards:
            assert f.duration == 0.0 and f.topology is None and f.group in (1, 2, 3)
        only = plan(random.Random(seed), [RESHARD], 30, [1, 2, 3], 3)
        assert only and all(f.kind == RESHARD for f in only)
    targets = {f.group for s in range(30) for f in plan(random.Random(s), [RESHARD], 30, [1, 2], 3)}
    assert targets == {1, 2}
    with pytest.raises(ValueError, match="at least 2 shard groups"):
        plan(random.Random(0), [RESHARD], 30, [1], 3)
    # overlapping the other faults is the point: some reshard starts inside a partition or kill
    overlaps = 0
    for seed in range(30):
        sched = plan(random.Random(seed), ["partition", "kill", RESHARD], 30, [1, 2, 3], 3)
        spans = [(f.at, f.at + f.duration) for f in sched if f.kind != RESHARD]
        overlaps += sum(any(a <= f.at <= b for a, b in spans) for f in sched if f.kind == RESHARD)
    assert overlaps > 10


def layout(groups: int = 3, per_group: int = 100, migrating: Sequence[int] = ()) -> Layout:
    owners = {s: 1 + s // per_group for s in range(groups * per_group)}
    return Layout(owners, tuple(range(1, groups + 1)), frozenset(migrating))


HOT = {"k0": 5, "k1": 150, "k2": 160, "k3": 250}  # groups 1, 2, 2, 3


def test_choose_moves_takes_the_hot_slots_of_one_source_and_more_from_its_top() -> None:
    sources = set()
    for seed in range(20):
        c = choose_moves(layout(), 1, HOT, random.Random(seed), extra=(3, 5))
        assert c is not None and c.target == 1 and c.source in (2, 3)
        assert c == choose_moves(layout(), 1, HOT, random.Random(seed), extra=(3, 5))
        sources.add(c.source)
        slots = [s for s, t in c.moves]
        assert all(t == 1 for _, t in c.moves) and slots == sorted(set(slots))
        hot = {s for k, s in HOT.items() if 1 + s // 100 == c.source}
        assert hot <= set(slots)
        assert c.hot_keys == tuple(sorted(k for k, s in HOT.items() if s in hot))
        top = c.source * 100 - 1
        extra = sorted(set(slots) - hot)
        assert 3 <= len(extra) <= 5 and extra == list(range(top - len(extra) + 1, top + 1))
    assert sources == {2, 3}


def test_choose_moves_leaves_migrating_slots_alone_and_falls_back_to_any_group() -> None:
    c = choose_moves(layout(migrating=[150, 199]), 3, HOT, random.Random(1), extra=(2, 2))
    assert c is not None
    slots = {s for s, _ in c.moves}
    assert not slots & {150, 199}
    # every hot slot already on the target: the source is any other group
    on_two = Layout(
        {s: 2 if s in HOT.values() else g for s, g in layout().owners.items()}, (1, 2, 3)
    )
    c = choose_moves(on_two, 2, HOT, random.Random(0), extra=(1, 1))
    assert c is not None and c.source in (1, 3) and c.hot_keys == () and len(c.moves) == 1
    assert (
        choose_moves(Layout(dict.fromkeys(range(10), 1), (1, 2)), 1, HOT, random.Random(0)) is None
    )


def test_slot_ranges() -> None:
    assert slot_ranges([7, 1, 2, 3, 9, 10]) == "1-3,7,9-10"
    assert slot_ranges([]) == ""


class FakeResharder:
    """A layout in memory; moves apply at once, or (``block``) wait for the stop and are
    left for `resume`."""

    def __init__(self, block: bool = False) -> None:
        self.owners = dict(layout().owners)
        self.pending: dict[int, int] = {}
        self.block = block
        self.entered = threading.Event()
        self.resumes = 0

    def layout(self) -> Layout:
        return Layout(dict(self.owners), (1, 2, 3), frozenset(self.pending))

    def reshard(self, moves: Sequence[tuple[int, int]], stop: threading.Event) -> ReshardResult:
        self.pending.update(moves)
        if self.block:
            self.entered.set()
            stop.wait()
            return ReshardResult({"stopped": len(moves)})
        return self.resume()

    def resume(self) -> ReshardResult:
        self.resumes += 1
        done = len(self.pending)
        self.owners.update(self.pending)
        self.pending.clear()
        return ReshardResult({"done": done}, 12.5)

    def migrations(self) -> list[Migrating]:
        return [Migrating(s, self.owners[s], t, "COPYING") for s, t in self.pending.items()]


def test_reshards_move_slots_log_them_and_leave_nothing() -> None:
    resharder = FakeResharder()
    log: list[dict[str, object]] = []
    schedule = [
        PlannedFault(0.0, RESHARD, 0.0, 1, None, 1),
        PlannedFault(0.0, "kill", 0.0, 1, None, 2),
        PlannedFault(0.0, RESHARD, 0.0, 2, None, 3),
    ]
    nemesis = Nemesis(FakeControl(), log.append, resharder=resharder, hot=HOT)
    nemesis.run(schedule, threading.Event())  # the kill only
    assert [e["fault"] for e in log] == ["kill", "kill"]
    nemesis.run_reshards(schedule, threading.Event())
    reshards = [e for e in log if e["fault"] == RESHARD]
    assert [(e["type"], e["id"]) for e in reshards] == [
        ("start", 1),
        ("stop", 1),
        ("start", 3),
        ("stop", 3),
    ]
    start, stop = reshards[0], reshards[1]
    assert start["to"] == 1 and start["from"] in (2, 3) and start["hot_keys"]
    assert stop["outcome"] == {"done": start["moves"]} and stop["moved"] == start["moves"]
    assert stop["hot_keys_moved"] == start["hot_keys"] and stop["cutover_max_ms"] == 12.5
    last = reshards[3]
    assert last["to"] == 2 and last["moved"] == reshards[2]["moves"]
    assert all(resharder.owners[HOT[str(k)]] == 2 for k in last["hot_keys_moved"])  # type: ignore[attr-defined]
    nemesis.finish_reshards(5.0)
    assert resharder.resumes == 2, "nothing left to finish: no resume"
    assert nemesis.check_migrations() == 0
    assert log[-1]["type"] == "migrations" and log[-1]["left"] == 0
    labels = [p.label for p in periods(log) if p.kind == RESHARD]
    assert labels[0] == f"reshard g{start['from']}->g1 ({start['moves']} slots)"


def test_a_reshard_stopped_at_the_heal_is_finished_after_it() -> None:
    resharder = FakeResharder(block=True)
    log: list[dict[str, object]] = []
    stop = threading.Event()
    nemesis = Nemesis(FakeControl(), log.append, resharder=resharder, hot=HOT)
    thread = nemesis.start_reshards([PlannedFault(0.0, RESHARD, 0.0, 3, None, 0)], stop)
    assert thread is not None
    assert resharder.entered.wait(10)
    stop.set()  # the heal
    nemesis.heal_all()
    thread.join(10)
    assert not thread.is_alive()
    planned = len(resharder.pending)
    assert planned > 0 and len(resharder.migrations()) == planned
    nemesis.finish_reshards(10.0, retry_wait=0.0)
    assert nemesis.check_migrations() == 0
    types = [(e["type"], e.get("id")) for e in log]
    assert types == [
        ("start", 1),
        ("heal-all", None),
        ("stop", 1),
        ("start", "finish"),
        ("stop", "finish"),
        ("migrations", None),
    ]
    assert log[2]["outcome"] == {"stopped": planned} and log[2]["moved"] == 0
    assert log[3]["moves"] == planned and log[3]["phases"] == {"COPYING": planned}
    assert log[4]["outcome"] == {"done": planned} and log[4]["left"] == 0
    spans = {p.label: p for p in periods(log)}
    first = next(p for label, p in spans.items() if label.startswith("reshard g"))
    assert first.end == log[2]["time"], "a reshard ends at its own stop, not at the heal"
    assert spans[f"reshard: finish {planned} left"].end == log[4]["time"]


def test_a_failing_resharder_is_logged_not_raised() -> None:
    class Broken(FakeResharder):
        def layout(self) -> Layout:
            raise ConnectionError("meta group unreachable")

    log: list[dict[str, object]] = []
    nemesis = Nemesis(FakeControl(), log.append, resharder=Broken())
    nemesis.run_reshards([PlannedFault(0.0, RESHARD, 0.0, 1, None, 0)], threading.Event())
    assert [e["type"] for e in log] == ["start", "stop"]
    assert "meta group unreachable" in str(log[0]["error"])
    with pytest.raises(ValueError, match="needs a Resharder"):
        Nemesis(FakeControl(), log.append).start_reshards(
            [PlannedFault(0.0, RESHARD, 0.0, 1, None, 0)], threading.Event()
        )
    assert Nemesis(FakeControl(), log.append).start_reshards([], threading.Event()) is None


def test_finishing_gives_up_on_a_refusal_and_reports_what_is_left() -> None:
    class Refusing(FakeResharder):
        def resume(self) -> ReshardResult:
            self.resumes += 1
            return ReshardResult({}, None, "StepRefused: unknown meta command", refused=True)

    resharder = Refusing()
    resharder.pending = {1: 2, 2: 2}
    log: list[dict[str, object]] = []
    nemesis = Nemesis(FakeControl(), log.append, resharder=resharder)
    nemesis.finish_reshards(60.0, retry_wait=0.0)
    assert resharder.resumes == 1, "a definite no is not retried until the deadline"
    assert log[-1]["left"] == 2 and "StepRefused" in str(log[-1]["error"])
    assert nemesis.check_migrations() == 2
    assert log[-1]["type"] == "migrations" and len(log[-1]["migrations"]) == 2  # type: ignore[arg-type]
