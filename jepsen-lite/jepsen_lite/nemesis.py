"""The nemesis: a fault schedule drawn from the seed, and the loop that carries it out.

What lives here: `plan` (the schedule: which fault, when, for how long, aimed at the leader of
which group, drawn from a `random.Random`), `grudges` (the partition topologies: who stops
hearing whom), the `ClusterControl` protocol a backend implements (find leaders, partition,
heal, kill -9 and restart, SIGSTOP and SIGCONT), `Nemesis` (runs a schedule against a
`ClusterControl`, logs every action as a dict) and `periods` (fault intervals from that log,
for the report).

Faults run one at a time: each starts at its planned offset, lasts its duration, and is healed
before the next starts; `Nemesis.heal_all` ends every fault whatever state the run is in. The
target is resolved when the fault starts: the node that leads the fault's group at that moment
(`ClusterControl.leader_of`), or, when no leader is known, a node drawn from the fault's own
seed. Timings vary from run to run; the plan, and so the sequence of faults, does not.

Topologies (node -> the nodes whose packets it drops; the target is always on the minority
side where there is one):

- ``isolated``: the target alone.
- ``halves``: a minority of ``n // 2`` nodes holding the target, and the rest.
- ``bridge``: two sides that cannot hear each other and one node that hears both; the target
  is on the first side.
- ``majorities-ring``: the nodes in a ring, each hearing a majority made of itself and its
  nearest neighbours, no two the same majority (as in Jepsen). With 3 nodes each hears one
  other node in one direction only, which TCP cannot use: every node is cut off.

What must not: any I/O of its own (the backend acts, the runner writes the log), global
randomness (every draw comes from the `random.Random` given), or deciding what a run's verdict
is.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "FAULT_KINDS",
    "TOPOLOGIES",
    "ClusterControl",
    "Nemesis",
    "Period",
    "PlannedFault",
    "grudges",
    "parse_kinds",
    "periods",
    "plan",
]

FAULT_KINDS = ("partition", "kill", "pause")
TOPOLOGIES = ("halves", "isolated", "majorities-ring", "bridge")

Event = dict[str, object]


@dataclass(frozen=True, slots=True)
class PlannedFault:
    """One fault of a schedule: starts `at` seconds after the run starts and lasts `duration`
    seconds (for ``kill``: the time the node stays dead before it is restarted)."""

    at: float
    kind: str
    duration: float
    group: int  # the fault is aimed at this group's leader
    topology: str | None  # partitions only
    seed: int  # orders the other nodes, and picks a target when no leader is known


def parse_kinds(spec: str) -> tuple[str, ...]:
    """``"partition,kill"`` -> ``("partition", "kill")``; ``"none"`` or ``""`` -> ``()``."""
    kinds = tuple(dict.fromkeys(k.strip() for k in spec.split(",") if k.strip()))
    if kinds in ((), ("none",)):
        return ()
    unknown = [k for k in kinds if k not in FAULT_KINDS]
    if unknown:
        raise ValueError(
            f"unknown nemesis {', '.join(unknown)} (expected a comma-separated subset of "
            f"{','.join(FAULT_KINDS)}, or none)"
        )
    return kinds


def plan(
    rng: random.Random,
    kinds: Sequence[str],
    duration: float,
    groups: Sequence[int],
    nodes: int,
    *,
    warmup: float | None = None,
    gap: tuple[float, float] = (1.0, 3.0),
    length: tuple[float, float] = (2.0, 5.0),
) -> list[PlannedFault]:
    """A schedule of faults, one at a time, all over (healed) by `duration` seconds.

    The first fault starts after `warmup` (default: 15% of the run, at most 3 s); faults last
    `length` seconds and are `gap` seconds apart (both drawn uniformly)."""
    if not kinds:
        return []
    if "partition" in kinds and nodes < 2:
        raise ValueError("partitions need at least 2 nodes")
    topologies = TOPOLOGIES if nodes >= 3 else ("halves", "isolated")
    t = min(3.0, 0.15 * duration) if warmup is None else warmup
    out: list[PlannedFault] = []
    end = duration - 0.5  # every fault healed a little before the workload's end
    while True:
        kind = rng.choice(list(kinds))
        d = rng.uniform(*length)
        if t + d > end:
            d = end - t  # the last fault may be shortened, but not below a second
            if d < 1.0:
                break
        topology = rng.choice(topologies) if kind == "partition" else None
        out.append(
            PlannedFault(t, kind, d, rng.choice(list(groups)), topology, rng.getrandbits(32))
        )
        t += d + rng.uniform(*gap)
    return out


def grudges(
    topology: str, nodes: Sequence[int], target: int, rng: random.Random
) -> dict[int, frozenset[int]]:
    """Who drops whose packets under `topology` (see the module docstring), with `target` on
    the minority side; the other nodes are ordered by `rng`. Every node is a key."""
    if target not in nodes:
        raise ValueError(f"target {target} is not one of the nodes {list(nodes)}")
    others = [n for n in nodes if n != target]
    rng.shuffle(others)
    ring = [target, *others]
    n = len(ring)
    if n < 2:
        raise ValueError("partitions need at least 2 nodes")
    everyone = frozenset(ring)
    if topology == "isolated":
        return _split([target], others)
    if topology == "halves":
        return _split(ring[: n // 2], ring[n // 2 :])
    if n < 3:
        raise ValueError(f"topology {topology} needs at least 3 nodes")
    if topology == "bridge":
        k = (n - 1) // 2
        side_a, side_b = ring[:k], ring[k + 1 :]
        cut = _split(side_a, side_b)
        cut[ring[k]] = frozenset()  # the bridge hears both sides
        return cut
    if topology == "majorities-ring":
        majority = n // 2 + 1
        before = (majority - 1) // 2
        after = majority - 1 - before
        out: dict[int, frozenset[int]] = {}
        for i, node in enumerate(ring):
            heard = {ring[(i + j) % n] for j in range(-before, after + 1)}
            out[node] = everyone - heard
        return out
    raise ValueError(f"unknown topology {topology!r} (expected one of {', '.join(TOPOLOGIES)})")


def _split(side_a: Sequence[int], side_b: Sequence[int]) -> dict[int, frozenset[int]]:
    a, b = frozenset(side_a), frozenset(side_b)
    return {**dict.fromkeys(a, b), **dict.fromkeys(b, a)}


class ClusterControl(Protocol):
    """What a backend offers the nemesis. Every method acts at once and returns; the ones that
    change a node are idempotent (killing a dead node, resuming a running one: no-ops)."""

    @property
    def node_ids(self) -> Sequence[int]: ...

    def leader_of(self, group: int) -> int | None:
        """The node leading `group` in the highest term any reachable node reports."""
        ...

    def led_groups(self, node: int) -> list[int]:
        """The groups `node` says it leads (empty if it does not answer)."""
        ...

    def partition(self, grudges: Mapping[int, frozenset[int]]) -> None: ...

    def heal_network(self) -> None: ...

    def kill(self, node: int) -> None:
        """SIGKILL the node's process."""
        ...

    def start(self, node: int) -> None:
        """Start the node's process again if it is not running."""
        ...

    def pause(self, node: int) -> None:
        """SIGSTOP the node's process."""
        ...

    def resume(self, node: int) -> None:
        """SIGCONT the node's process if it is paused."""
        ...


@dataclass(frozen=True, slots=True)
class Period:
    """A fault's interval for the report: monotonic ns, `end` None if never healed."""

    start: int
    end: int | None
    kind: str
    label: str


class Nemesis:
    """Carries out a schedule against a `ClusterControl`; see the module docstring.

    `log` receives one dict per action: ``{"time": monotonic ns, "t": seconds since the start,
    "type": "start" | "stop" | "heal-all", "id", "fault", "target", "group", ...}``."""

    def __init__(
        self,
        control: ClusterControl,
        log: Callable[[Event], None],
        *,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.control = control
        self._log = log
        self._clock = clock
        self._t0 = clock()

    def _emit(self, event: Event) -> Event:
        now = self._clock()
        full: Event = {"time": now, "t": round((now - self._t0) / 1e9, 3), **event}
        self._log(full)
        return full

    def run(self, schedule: Sequence[PlannedFault], stop: threading.Event) -> None:
        """Carry out `schedule`, offsets counted from now; returns early when `stop` is set
        (leaving at most the current fault to `heal_all`)."""
        self._t0 = self._clock()
        for n, fault in enumerate(schedule, 1):
            if stop.wait(max(0.0, fault.at - (self._clock() - self._t0) / 1e9)):
                return
            heal = self._start(n, fault)
            stopped = stop.wait(fault.duration)
            heal()
            if stopped:
                return

    def _start(self, n: int, fault: PlannedFault) -> Callable[[], None]:
        control = self.control
        rng = random.Random(fault.seed)
        target = control.leader_of(fault.group)
        how = "leader"
        if target is None:
            target = rng.choice(list(control.node_ids))
            how = "no leader known: a node drawn from the seed"
        base: Event = {"id": n, "fault": fault.kind, "target": target, "group": fault.group}
        led = control.led_groups(target)
        if fault.kind == "partition":
            assert fault.topology is not None
            cut = grudges(fault.topology, control.node_ids, target, rng)
            control.partition(cut)
            self._emit(
                {
                    "type": "start",
                    **base,
                    "topology": fault.topology,
                    "why": how,
                    "led_groups": led,
                    "grudges": {str(k): sorted(v) for k, v in sorted(cut.items())},
                }
            )

            def heal() -> None:
                control.heal_network()
                self._emit({"type": "stop", **base})

            return heal
        if fault.kind == "kill":
            control.kill(target)
            self._emit({"type": "start", **base, "why": how, "led_groups": led})

            def restart() -> None:
                control.start(target)
                self._emit({"type": "stop", **base})

            return restart
        if fault.kind == "pause":
            control.pause(target)
            self._emit({"type": "start", **base, "why": how, "led_groups": led})

            def resume() -> None:
                control.resume(target)
                self._emit({"type": "stop", **base})

            return resume
        raise ValueError(f"unknown fault {fault.kind!r}")

    def heal_all(self) -> None:
        """End every fault: heal the network, resume paused nodes, start dead ones."""
        control = self.control
        control.heal_network()
        for node in control.node_ids:
            control.resume(node)
            control.start(node)
        self._emit({"type": "heal-all"})


def periods(events: Sequence[Mapping[str, object]]) -> list[Period]:
    """The faults' intervals from a nemesis log (a fault not stopped ends at ``heal-all``)."""
    open_: dict[object, tuple[int, str, str]] = {}
    out: list[Period] = []
    for e in events:
        kind = e.get("type")
        time_ns = e.get("time")
        if not isinstance(time_ns, int):
            continue
        if kind == "start":
            fault = str(e.get("fault"))
            label = f"{fault} n{e.get('target')}"
            if e.get("topology"):
                label = f"partition {e.get('topology')} (aimed at n{e.get('target')})"
            open_[e.get("id")] = (time_ns, fault, label)
        elif kind == "stop" and e.get("id") in open_:
            start, fault, label = open_.pop(e.get("id"))
            out.append(Period(start, time_ns, fault, label))
        elif kind == "heal-all":
            for start, fault, label in open_.values():
                out.append(Period(start, time_ns, fault, label))
            open_.clear()
    out.extend(Period(s, None, f, label) for s, f, label in open_.values())
    return sorted(out, key=lambda p: p.start)
