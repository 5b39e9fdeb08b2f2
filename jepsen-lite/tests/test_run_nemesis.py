"""The nemesis without a cluster: schedules from the seed, partition topologies, the loop that
carries a schedule out (against a fake `ClusterControl`), and fault periods from its log."""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping, Sequence

import pytest
from jepsen_lite.nemesis import (
    FAULT_KINDS,
    TOPOLOGIES,
    Nemesis,
    PlannedFault,
    grudges,
    parse_kinds,
    periods,
    plan,
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
            assert fault.at >= end, "one fault at a time"
            assert fault.duration >= 1.0
            assert (fault.topology is not None) == (fault.kind == "partition")
            end = fault.at + fault.duration
        assert end <= 60 - 0.5
    kinds = {f.kind for s in range(30) for f in plan(random.Random(s), FAULT_KINDS, 60, [1], 3)}
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
