"""The nemesis: a fault schedule drawn from the seed, and the loops that carry it out.

What lives here: `plan` (the schedule: which fault, when, for how long, aimed at the leader of
which group, drawn from a `random.Random`), `grudges` (the partition topologies: who stops
hearing whom), the `ClusterControl` protocol a backend implements (find leaders, partition,
heal, kill -9 and restart, SIGSTOP and SIGCONT), the `Resharder` protocol (the slot layout, and
online slot moves: `resharder.ClusterResharder`), `choose_moves` (which slots a reshard moves),
`Nemesis` (runs a schedule against a `ClusterControl` and a `Resharder`, logs every action as a
dict) and `periods` (fault intervals from that log, for the report).

Faults (``partition``, ``kill``, ``pause``) run one at a time: each starts at its planned
offset, lasts its duration, and is healed before the next starts; `Nemesis.heal_all` ends every
fault whatever state the run is in. The target is resolved when the fault starts: the node that
leads the fault's group at that moment (`ClusterControl.leader_of`), or, when no leader is
known, a node drawn from the fault's own seed. Timings vary from run to run; the plan, and so
the sequence of faults, does not.

Reshards (``reshard``) have a timeline of their own, so they overlap the other faults (on
purpose: a migration must survive a partition or a kill of a leader). Each moves a batch of
slots to the planned group (``PlannedFault.group``), from one other group, while the workload
runs: the slots of the workload's hot keys that group owns and a few more from the top of its
range (`choose_moves`, from the layout when the reshard starts and the fault's own seed). They
run one after the other on a thread of their own (`Nemesis.start_reshards`): a reshard whose
time comes while the previous one still runs starts when it ends. The reshard thread's stop
event is set at the heal: the moves stop before any further freeze (slots already frozen finish
their cutover); then `Nemesis.finish_reshards` resumes what is left and checks that no
migration remains. Adding ``reshard`` to the kinds leaves the other faults' schedule unchanged.

Topologies (node -> the nodes whose packets it drops; the target is always on the minority
side where there is one):

- ``isolated``: the target alone.
- ``halves``: a minority of ``n // 2`` nodes holding the target, and the rest.
- ``bridge``: two sides that cannot hear each other and one node that hears both; the target
  is on the first side.
- ``majorities-ring``: the nodes in a ring, each hearing a majority made of itself and its
  nearest neighbours, no two the same majority (as in Jepsen). With 3 nodes each hears one
  other node in one direction only, which TCP cannot use: every node is cut off.

What must not: any I/O of its own (the backend and the resharder act, the runner writes the
log), global randomness (every draw comes from the `random.Random` given), or deciding what a
run's verdict is.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "FAULT_KINDS",
    "RESHARD",
    "TOPOLOGIES",
    "ClusterControl",
    "Layout",
    "Migrating",
    "Nemesis",
    "Period",
    "PlannedFault",
    "ReshardChoice",
    "ReshardResult",
    "Resharder",
    "choose_moves",
    "grudges",
    "parse_kinds",
    "periods",
    "plan",
    "slot_ranges",
]

FAULT_KINDS = ("partition", "kill", "pause", "reshard")
RESHARD = "reshard"
TOPOLOGIES = ("halves", "isolated", "majorities-ring", "bridge")

Event = dict[str, object]


@dataclass(frozen=True, slots=True)
class PlannedFault:
    """One fault of a schedule: starts `at` seconds after the run starts and lasts `duration`
    seconds (for ``kill``: the time the node stays dead before it is restarted; for
    ``reshard``: 0, a reshard lasts until its moves are done or the heal stops it)."""

    at: float
    kind: str
    duration: float
    group: int  # the fault is aimed at this group's leader; reshard: the group receiving slots
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
    reshard_gap: tuple[float, float] = (3.0, 7.0),
) -> list[PlannedFault]:
    """A schedule of faults, in order of their start, all over (healed) by `duration` seconds.

    The first fault starts after `warmup` (default: 15% of the run, at most 3 s); faults last
    `length` seconds and are `gap` seconds apart (both drawn uniformly), one at a time.
    Reshards (if ``reshard`` is one of `kinds`) start `reshard_gap` seconds apart, the first
    within a second after the warmup, the last before the heal (one still running then is
    stopped at the heal and finished after it); they are drawn after the other faults, from a
    generator seeded by `rng`, so the other faults are the same with or without them."""
    if not kinds:
        return []
    if "partition" in kinds and nodes < 2:
        raise ValueError("partitions need at least 2 nodes")
    if RESHARD in kinds and len(groups) < 2:
        raise ValueError("reshards need at least 2 shard groups")
    topologies = TOPOLOGIES if nodes >= 3 else ("halves", "isolated")
    start = min(3.0, 0.15 * duration) if warmup is None else warmup
    t = start
    out: list[PlannedFault] = []
    end = duration - 0.5  # every fault healed a little before the workload's end
    serial = [k for k in kinds if k != RESHARD]
    while serial:
        kind = rng.choice(serial)
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
    if RESHARD in kinds:
        rrng = random.Random(rng.getrandbits(64))
        t = start + rrng.uniform(0.0, 1.0)
        while t <= end:
            out.append(
                PlannedFault(t, RESHARD, 0.0, rrng.choice(list(groups)), None, rrng.getrandbits(32))
            )
            t += rrng.uniform(*reshard_gap)
        out.sort(key=lambda f: f.at)
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
class Layout:
    """Who owns which slot: `owners` maps every owned slot to its shard group; `migrating`
    holds the slots with an unfinished migration."""

    owners: Mapping[int, int]
    groups: tuple[int, ...]
    migrating: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class ReshardResult:
    """What driving migrations came to: slots per outcome (``done``, ``stopped``, ``aborted``),
    the longest cutover (ms), and the error that ended it early (None if none did);
    `refused`: the cluster said no for good (trying again cannot help)."""

    outcomes: Mapping[str, int]
    cutover_max_ms: float | None = None
    error: str | None = None
    refused: bool = False


@dataclass(frozen=True, slots=True)
class Migrating:
    """An unfinished migration, as the meta group records it."""

    slot: int
    source: int
    target: int
    phase: str


class Resharder(Protocol):
    """What a reshard needs of the cluster (`resharder.ClusterResharder`). Methods raise when
    the cluster cannot be reached in time; `reshard` and `resume` report failures in their
    result instead."""

    def layout(self) -> Layout: ...

    def reshard(self, moves: Sequence[tuple[int, int]], stop: threading.Event) -> ReshardResult:
        """Record `moves` ((slot, target group)) and drive every unfinished migration until
        done, or until `stop` is set (then it returns before any further freeze)."""
        ...

    def resume(self) -> ReshardResult:
        """Drive every unfinished migration to its end (no stopping)."""
        ...

    def migrations(self) -> list[Migrating]: ...


@dataclass(frozen=True, slots=True)
class ReshardChoice:
    """The moves of one reshard: `moves` ((slot, target)), all from `source` to `target`;
    `hot_keys`: the workload keys whose slots are among them."""

    source: int
    target: int
    moves: tuple[tuple[int, int], ...]
    hot_keys: tuple[str, ...]


def choose_moves(
    layout: Layout,
    target: int,
    hot: Mapping[str, int],
    rng: random.Random,
    extra: tuple[int, int] = (8, 96),
) -> ReshardChoice | None:
    """The slots one reshard moves to `target`: from a source group drawn from those owning a
    hot key's slot (`hot`: key -> slot) that `target` does not own (any other group owning
    slots if there is none), all of the source's hot slots plus `extra` (drawn uniformly) of
    its other slots, from the top of its range. Slots under migration are left alone. None if
    no other group owns a slot."""
    movable = {s: g for s, g in layout.owners.items() if s not in layout.migrating}
    hot_groups = sorted({movable[s] for s in hot.values() if s in movable} - {target})
    if hot_groups:
        source = rng.choice(hot_groups)
    else:
        others = sorted(set(movable.values()) - {target})
        if not others:
            return None
        source = rng.choice(others)
    hot_slots = {s for s in hot.values() if movable.get(s) == source}
    rest = sorted(s for s, g in movable.items() if g == source and s not in hot_slots)
    n = min(rng.randint(*extra), len(rest))
    slots = sorted(hot_slots | set(rest[len(rest) - n :] if n else []))
    keys = tuple(sorted(k for k, s in hot.items() if s in hot_slots))
    return ReshardChoice(source, target, tuple((s, target) for s in slots), keys)


def slot_ranges(slots: Sequence[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3,7"``."""
    out: list[str] = []
    ordered = sorted(set(slots))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


@dataclass(frozen=True, slots=True)
class Period:
    """A fault's interval for the report: monotonic ns, `end` None if never healed."""

    start: int
    end: int | None
    kind: str
    label: str


class Nemesis:
    """Carries out a schedule against a `ClusterControl`, and its reshards through a
    `Resharder`; see the module docstring.

    `log` receives one dict per action: ``{"time": monotonic ns, "t": seconds since the start,
    "type": "start" | "stop" | "heal-all" | "migrations", "id", "fault", ...}``. Faults add
    ``"target"`` (a node) and ``"group"``. Reshards add ``"from"`` and ``"to"`` (groups), and at
    the start ``"moves"``, ``"slots"`` (ranges) and ``"hot_keys"``; at the stop ``"outcome"``
    (slots per outcome: done, stopped, aborted), ``"moved"`` (how many of the slots the layout
    then gives to ``"to"``; None if it could not be read), ``"hot_keys_moved"``,
    ``"cutover_max_ms"`` and ``"error"``. The reshards left at the heal are finished under the
    id ``"finish"``; ``"migrations"`` (``"left"``: how many remain) is the final check. Events
    come from two threads; `log` is called under a lock, in time order."""

    def __init__(
        self,
        control: ClusterControl,
        log: Callable[[Event], None],
        *,
        clock: Callable[[], int] = time.monotonic_ns,
        resharder: Resharder | None = None,
        hot: Mapping[str, int] | None = None,
    ) -> None:
        self.control = control
        self.resharder = resharder
        self.hot = dict(hot or {})  # the workload's keys -> their slots
        self._log = log
        self._clock = clock
        self._t0 = clock()
        self._began = False
        self._lock = threading.Lock()

    def _begin(self) -> None:
        """Offsets are counted from the first `run` or `start_reshards`."""
        with self._lock:
            if not self._began:
                self._began = True
                self._t0 = self._clock()

    def _emit(self, event: Event) -> Event:
        with self._lock:
            now = self._clock()
            full: Event = {"time": now, "t": round((now - self._t0) / 1e9, 3), **event}
            self._log(full)
        return full

    def _elapsed(self) -> float:
        return (self._clock() - self._t0) / 1e9

    def run(self, schedule: Sequence[PlannedFault], stop: threading.Event) -> None:
        """Carry out the faults of `schedule` (not its reshards), offsets counted from the
        first `run` or `start_reshards` call; returns early when `stop` is set (leaving at
        most the current fault to `heal_all`)."""
        self._begin()
        for n, fault in enumerate(schedule, 1):
            if fault.kind == RESHARD:
                continue
            if stop.wait(max(0.0, fault.at - self._elapsed())):
                return
            heal = self._start(n, fault)
            stopped = stop.wait(fault.duration)
            heal()
            if stopped:
                return

    # -- reshards ----------------------------------------------------------------------------
    def start_reshards(
        self, schedule: Sequence[PlannedFault], stop: threading.Event
    ) -> threading.Thread | None:
        """`run_reshards` on a daemon thread of its own (returned; None if `schedule` has no
        reshard). Set `stop` at the heal, then join the thread."""
        if not any(f.kind == RESHARD for f in schedule):
            return None
        if self.resharder is None:
            raise ValueError("a schedule with reshards needs a Resharder")
        self._begin()
        thread = threading.Thread(
            target=self.run_reshards, args=(schedule, stop), name="nemesis-reshard", daemon=True
        )
        thread.start()
        return thread

    def run_reshards(self, schedule: Sequence[PlannedFault], stop: threading.Event) -> None:
        """Carry out the reshards of `schedule`, one after the other, each at its offset or when
        the previous one ends; returns when they are done or `stop` is set."""
        self._begin()
        try:
            for n, fault in enumerate(schedule, 1):
                if fault.kind != RESHARD:
                    continue
                if stop.wait(max(0.0, fault.at - self._elapsed())):
                    return
                self._reshard(n, fault, stop)
        except Exception as e:  # a bug here must not pass silently on a thread
            self._emit({"type": "reshard-crashed", "error": f"{type(e).__name__}: {e}"[:300]})

    def _reshard(self, n: int, fault: PlannedFault, stop: threading.Event) -> None:
        resharder = self.resharder
        assert resharder is not None
        base: Event = {"id": n, "fault": RESHARD, "group": fault.group, "to": fault.group}
        choice: ReshardChoice | None = None
        error: str | None = None
        try:
            layout = resharder.layout()
            choice = choose_moves(layout, fault.group, self.hot, random.Random(fault.seed))
            if choice is None:
                error = "no other group owns a slot"
        except Exception as e:
            error = f"layout: {type(e).__name__}: {e}"[:300]
        if choice is None:
            self._emit({"type": "start", **base, "from": None, "moves": 0, "error": error})
            self._emit({"type": "stop", **base, "from": None, "outcome": {}, "moved": 0})
            return
        slots = [s for s, _ in choice.moves]
        base["from"] = choice.source
        self._emit(
            {
                "type": "start",
                **base,
                "moves": len(slots),
                "slots": slot_ranges(slots),
                "hot_keys": list(choice.hot_keys),
            }
        )
        try:
            result = resharder.reshard(choice.moves, stop)
        except Exception as e:
            result = ReshardResult({}, None, f"{type(e).__name__}: {e}"[:300])
        moved: int | None = None
        hot_moved: list[str] = []
        try:
            after = resharder.layout().owners
            moved = sum(after.get(s) == choice.target for s in slots)
            hot_moved = [k for k in choice.hot_keys if after.get(self.hot[k]) == choice.target]
        except Exception as e:
            result = ReshardResult(
                result.outcomes, result.cutover_max_ms, result.error or f"layout after: {e}"
            )
        self._emit(
            {
                "type": "stop",
                **base,
                "outcome": dict(result.outcomes),
                "moved": moved,
                "hot_keys_moved": hot_moved,
                "cutover_max_ms": result.cutover_max_ms,
                "error": result.error,
            }
        )

    def _migrations(self) -> list[Migrating] | None:
        assert self.resharder is not None
        try:
            return self.resharder.migrations()
        except Exception:
            return None

    def finish_reshards(self, timeout: float, retry_wait: float = 0.5) -> None:
        """After the heal (the reshard thread stopped): resume the migrations left, again until
        none is left, `timeout` seconds have passed, or the cluster refuses a step for good.
        Logged as a reshard period with the id ``"finish"`` when there was anything to
        finish."""
        if self.resharder is None:
            return
        deadline = self._clock() + int(timeout * 1e9)
        left = self._migrations()
        if left == []:
            return
        base: Event = {"id": "finish", "fault": RESHARD}
        start: Event = {"type": "start", **base, "why": "finish the migrations left at the heal"}
        if left is not None:
            start.update(
                moves=len(left),
                slots=slot_ranges([m.slot for m in left]),
                phases=dict(Counter(m.phase for m in left)),
            )
        self._emit(start)
        outcomes: Counter[str] = Counter()
        errors: list[str] = []
        cutover: list[float] = []
        while left != [] and self._clock() < deadline:
            try:
                r = self.resharder.resume()
            except Exception as e:
                r = ReshardResult({}, None, f"{type(e).__name__}: {e}"[:300])
            outcomes.update(r.outcomes)
            errors += [r.error] if r.error else []
            cutover += [r.cutover_max_ms] if r.cutover_max_ms is not None else []
            left = self._migrations()
            if left != [] and r.refused:
                break
            if left != []:
                time.sleep(retry_wait)  # the cluster is still recovering: try again shortly
        self._emit(
            {
                "type": "stop",
                **base,
                "outcome": dict(outcomes),
                "left": None if left is None else len(left),
                "cutover_max_ms": max(cutover, default=None),
                "error": "; ".join(errors[-3:]) or None,
            }
        )

    def check_migrations(self) -> int | None:
        """Log (``"migrations"``) and return how many migrations the meta group still has
        (None: it could not be read). Zero is what a run must end with."""
        left = self._migrations()
        count = None if left is None else len(left)
        event: Event = {"type": "migrations", "left": count}
        if left:
            event["migrations"] = [
                {"slot": m.slot, "from": m.source, "to": m.target, "phase": m.phase}
                for m in left[:20]
            ]
        self._emit(event)
        return count

    # -- faults ------------------------------------------------------------------------------
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
    """The faults' intervals from a nemesis log. A fault not stopped ends at ``heal-all``; a
    reshard ends at its own stop (the heal only stops it before its next freeze), or never."""
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
            if fault == RESHARD:
                label = _reshard_label(e)
            open_[e.get("id")] = (time_ns, fault, label)
        elif kind == "stop" and e.get("id") in open_:
            start, fault, label = open_.pop(e.get("id"))
            out.append(Period(start, time_ns, fault, label))
        elif kind == "heal-all":
            for key, (start, fault, label) in list(open_.items()):
                if fault != RESHARD:
                    out.append(Period(start, time_ns, fault, label))
                    del open_[key]
    out.extend(Period(s, None, f, label) for s, f, label in open_.values())
    return sorted(out, key=lambda p: p.start)


def _reshard_label(e: Mapping[str, object]) -> str:
    if e.get("id") == "finish":
        return f"reshard: finish {e.get('moves', '?')} left"
    if e.get("from") is None:
        return f"reshard ->g{e.get('to')}: failed"
    return f"reshard g{e.get('from')}->g{e.get('to')} ({e.get('moves')} slots)"
