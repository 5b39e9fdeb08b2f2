"""Online slot migration on a real 3-node cluster, checked for linearizability.

Concurrent clients read, write and CAS many registers while slots move; the history they
record goes through jepsen-lite's checker, and the final contents must be exactly what the
history says. Then the same under SIGKILLs of the source, target and meta leaders at
different points of a migration, and the operator's cancel / resume / abort.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest
from jepsen_lite.checker import check_history

from kvcluster.client import Client
from kvcluster.errors import KvClusterError, OutcomeUnknown, RetryBudgetExhausted
from kvcluster.kv.commands import encode_command
from kvcluster.kv.slot_moves import ImportChunk
from kvcluster.kv.values import encode_value
from kvcluster.local import LocalCluster
from kvcluster.meta import META_GROUP
from kvcluster.reshard import Executor, LeaderCalls, SlotReport, StepRefused
from kvcluster.sharding import key_slot
from kvcluster.sharding.migration import Phase


class RegisterWorkload:
    """``threads`` clients doing read / write / cas on ``keys``, recording a history in
    jepsen-lite's format. An operation whose outcome is unknown is ``info`` and its process
    retires (the thread goes on as a new process)."""

    def __init__(self, seeds: str, keys: list[str], threads: int = 6, seed: int = 7) -> None:
        self.seeds = seeds
        self.keys = keys
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._next_process = 0
        self.stop = threading.Event()
        self.ok_ops = 0
        self._threads = [
            threading.Thread(target=self._loop, args=(random.Random(seed + i),), daemon=True)
            for i in range(threads)
        ]

    def _event(self, **e: Any) -> None:
        with self._lock:
            e["time"] = time.monotonic_ns()
            self.events.append(e)

    def _new_process(self) -> int:
        with self._lock:
            self._next_process += 1
            return self._next_process

    def _loop(self, rng: random.Random) -> None:
        client = Client(self.seeds, timeout=3.0)
        process = self._new_process()
        n = 0
        try:
            while not self.stop.is_set():
                n += 1
                key = rng.choice(self.keys)
                f = rng.choice(["read", "write", "cas"])
                value: Any = None
                if f == "write":
                    value = n % 5
                elif f == "cas":
                    value = [rng.randrange(5), rng.randrange(5)]
                self._event(process=process, type="invoke", f=f, key=key, value=value)
                try:
                    if f == "read":
                        raw = client.get(key)
                        result: Any = None if raw is None else int(raw)
                        self._event(process=process, type="ok", f=f, key=key, value=result)
                    elif f == "write":
                        client.set(key, str(value))
                        self._event(process=process, type="ok", f=f, key=key, value=value)
                    else:
                        ok = client.cas(key, str(value[0]), str(value[1]))
                        kind = "ok" if ok else "fail"
                        self._event(process=process, type=kind, f=f, key=key, value=value)
                    self.ok_ops += 1
                except (OutcomeUnknown, RetryBudgetExhausted):
                    if f == "read":
                        self._event(process=process, type="fail", f=f, key=key, value=value)
                    else:
                        self._event(process=process, type="info", f=f, key=key, value=value)
                        process = self._new_process()
                except KvClusterError:
                    self._event(process=process, type="fail", f=f, key=key, value=value)
        finally:
            client.close()

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(60)
            assert not t.is_alive(), "a client thread did not stop"

    def wait_ops(self, n: int, timeout: float = 60.0) -> None:
        target = self.ok_ops + n
        deadline = time.monotonic() + timeout
        while self.ok_ops < target:
            assert time.monotonic() < deadline, f"workload made no progress ({self.ok_ops})"
            self.stop.wait(0.05)

    def check(self, client: Client) -> None:
        """The history is linearizable, and every key's final value is one it allows."""
        final = {k: client.get(k) for k in self.keys}
        events = list(self.events)
        process = 10**6
        for k, raw in final.items():  # the final reads, after every client stopped
            process += 1
            t = time.monotonic_ns()
            v = None if raw is None else int(raw)
            events.append({"process": process, "type": "invoke", "f": "read", "key": k,
                           "value": None, "time": t})  # fmt: skip
            events.append({"process": process, "type": "ok", "f": "read", "key": k,
                           "value": v, "time": t})  # fmt: skip
        verdict = check_history(events, "register", timeout=120)
        assert verdict.valid is True, verdict.explain()


def keys_in(slots: list[int], per_slot: int = 1, prefix_from: int = 0) -> list[str]:
    """Keys that hash to each of ``slots`` (found by search, from ``r<prefix_from>`` on)."""
    want = {s: per_slot for s in slots}
    out: list[str] = []
    i = prefix_from
    while want:
        k = f"r{i}"
        i += 1
        s = key_slot(k)
        if s in want:
            out.append(k)
            want[s] -= 1
            if not want[s]:
                del want[s]
    return out


@pytest.fixture
def cluster(cluster_factory: Any) -> LocalCluster:
    c: LocalCluster = cluster_factory(3, tick_ms=20, groups=3, replicas=3)
    c.start()
    return c


def test_reshard_a_third_of_the_slots_under_load_is_linearizable(cluster: LocalCluster) -> None:
    seeds = ",".join(cluster.addresses)
    with LeaderCalls(cluster.addresses) as calls:
        meta = calls.meta_state()
        group1 = [s for a, b, g in meta.owners if g == 1 for s in range(a, b + 1)]
        assert len(group1) == 5461  # a third of 16384
        # Registers in moving slots and in staying ones, plus bulk data with TTLs.
        moving = keys_in(group1[::200], 1)
        staying = keys_in([s for a, b, g in meta.owners if g != 1 for s in range(a, b + 1)][::800])
        with Client(seeds) as kv:
            bulk = {f"bulk:{i}": f"b{i}" for i in range(2000)}
            kv.mset(bulk)
            kv.set("ttl-key", "t", px=600_000)
        work = RegisterWorkload(seeds, moving + staying, threads=6)
        work.start()
        work.wait_ops(100)
        reports: list[SlotReport] = []
        ex = Executor(calls, on_slot=reports.append)
        ex.plan([(s, 2 if s % 2 else 3) for s in group1])
        ex.run()
        work.wait_ops(100)
        work.finish()
        assert all(r.outcome == "done" for r in reports) and len(reports) == len(group1)
        after = calls.meta_state()
        assert after.migrations == ()
        assert not any(g == 1 for _, _, g in after.owners)
        with Client(seeds) as kv:
            work.check(kv)
            assert kv.mget(list(bulk)) == [v.encode() for v in bulk.values()]
            ttl = kv.pttl("ttl-key")
            assert 0 < ttl <= 600_000, "the TTL travelled with the key"


def _leader_node(c: LocalCluster, group: int) -> int:
    leader = c.wait_for_leader(group, timeout=30)
    assert leader is not None
    return leader


@pytest.mark.parametrize("victim", ["source", "target", "meta"])
def test_a_leader_killed_mid_migration_and_the_migration_still_completes(
    cluster: LocalCluster, victim: str
) -> None:
    seeds = ",".join(cluster.addresses)
    group = {"source": 1, "target": 2, "meta": META_GROUP}[victim]
    with LeaderCalls(cluster.addresses, step_deadline=90) as calls:
        meta = calls.meta_state()
        slots = [s for a, b, g in meta.owners if g == 1 for s in range(a, b + 1)][:60]
        keys = keys_in(slots[::6], 2)
        with Client(seeds) as kv:
            kv.mset({f"d{i}:{{{k}}}": "x" * 64 for i in range(30) for k in keys[:4]})
        work = RegisterWorkload(seeds, keys, threads=4)
        work.start()
        work.wait_ops(50)
        killed: list[int] = []
        killed_when: list[int] = []
        done: list[SlotReport] = []
        first_wave = threading.Event()

        def killer() -> None:
            # Once the first wave is done, the second is somewhere in its steps.
            first_wave.wait(120)
            node = _leader_node(cluster, group)
            cluster.kill_node(node)
            killed.append(node)
            killed_when.append(len(done))

        def on_slot(r: SlotReport) -> None:
            done.append(r)
            if len(done) >= 6:
                first_wave.set()

        th = threading.Thread(target=killer, daemon=True)
        th.start()
        ex = Executor(calls, batch=6, parallel=2, on_slot=on_slot)
        ex.plan([(s, 2) for s in slots])
        ex.run()
        th.join(30)
        assert killed and killed_when[0] < len(slots), "the leader died mid-migration"
        cluster.start_node(killed[0])
        work.wait_ops(50)
        work.finish()
        assert [r.outcome for r in done].count("done") == len(slots)
        assert calls.meta_state().migrations == ()
        with Client(seeds) as kv:
            work.check(kv)


def run_until_stopped(calls: LeaderCalls, moves: list[tuple[int, int]], after: int) -> None:
    """Plan ``moves`` and run them, setting the stop event once ``after`` slots reported."""
    stop = threading.Event()
    seen: list[SlotReport] = []

    def stop_soon(r: SlotReport) -> None:
        seen.append(r)
        if len(seen) >= after:
            stop.set()

    ex = Executor(calls, batch=8, parallel=1, stop=stop, on_slot=stop_soon)
    ex.plan(moves)
    ex.run()


def test_stop_then_resume_and_stop_then_abort(cluster: LocalCluster) -> None:
    seeds = ",".join(cluster.addresses)
    with LeaderCalls(cluster.addresses) as calls:
        meta = calls.meta_state()
        slots = [s for a, b, g in meta.owners if g == 3 for s in range(a, b + 1)][-80:]
        keys = keys_in(slots[::8], 2)
        work = RegisterWorkload(seeds, keys, threads=4)
        work.start()
        work.wait_ops(50)

        # Stop after a few slots (as Ctrl-C does): nothing is left frozen.
        run_until_stopped(calls, [(s, 1) for s in slots], after=8)
        left = calls.meta_state().migrations
        assert left, "stopping early leaves migrations to resume"
        assert all(m.phase in (Phase.PENDING, Phase.COPYING) for m in left), left
        work.wait_ops(30)  # the cluster serves every slot meanwhile

        # Resume finishes them.
        Executor(calls, batch=8).run()
        assert calls.meta_state().migrations == ()
        assert all(calls.meta_state().owner(s) == 1 for s in slots)

        # Move them back, stop early again, then abort: the unflipped ones stay with 1.
        run_until_stopped(calls, [(s, 3) for s in slots], after=8)
        assert calls.meta_state().migrations
        reports = Executor(calls, batch=8).abort()
        assert {r.outcome for r in reports} <= {"aborted", "done"}
        assert calls.meta_state().migrations == ()
        owners = {s: calls.meta_state().owner(s) for s in slots}
        assert set(owners.values()) <= {1, 3}
        work.wait_ops(30)
        work.finish()
        with Client(seeds) as kv:
            work.check(kv)


class _Died(Exception):
    """The executor 'dies' at a chosen step (a crash of kvctl, as far as the cluster sees)."""


class _DiesBeforeActivate(Executor):
    """Copies (then ``write_after_copy`` runs: the source still serves), freezes, and dies
    before the final pass and Activate reach the target."""

    write_after_copy: Any = None

    def _copy(self, w: Any, ms: Any, stoppable: bool) -> None:
        super()._copy(w, ms, stoppable)
        self.write_after_copy()

    def _final_pass(self, w: Any, ms: Any) -> None:
        raise _Died


class _FlipsWithoutActivate(_DiesBeforeActivate):
    """As an older executor could: flips although the target never activated, then dies."""

    def _final_pass(self, w: Any, ms: Any) -> None:
        pass

    def _finish_wave(self, w: Any, t0: Any = None, *, activated: bool = False) -> Any:
        raise _Died


class _DiesBeforeFreeze(Executor):
    """Records FROZEN in the meta group (the point of no return), then never freezes."""

    def _freeze(self, w: Any, ms: Any) -> None:
        raise _Died


def _bulk(kv: Client, keys: list[str], tag: str) -> dict[str, str]:
    values = {k: f"{tag}-{i}" for i, k in enumerate(keys)}
    for k, v in values.items():
        kv.set(k, v)
    return values


def _moved_to_3_by_a_dying_executor(
    calls: LeaderCalls,
    kv: Client,
    seeds: str,
    slots: list[int],
    dying_executor: type[_DiesBeforeActivate],
) -> tuple[dict[str, str], RegisterWorkload]:
    """Bulk keys and registers in ``slots``, a register workload running, and an executor
    of type ``dying_executor`` that moved the slots towards group 3, wrote a third of the
    bulk keys again after its copy, and died. Returns the values the bulk keys must end
    with, and the workload (still running)."""
    before = _bulk(kv, keys_in(slots, 20), "before")
    work = RegisterWorkload(seeds, keys_in(slots, 2, prefix_from=10**6), threads=3)
    work.start()
    work.wait_ops(30)
    dying = dying_executor(calls, batch=8)
    dying.write_after_copy = lambda: before.update(_bulk(kv, list(before)[::3], "during"))
    dying.plan([(s, 3) for s in slots])
    with pytest.raises(_Died):
        dying.run()
    return before, work


def _check_nothing_lost(kv: Client, before: dict[str, str], work: RegisterWorkload) -> None:
    """Once the moves are finished: the bulk keys hold their last values and the workload's
    history (it goes on a little first) is linearizable."""
    work.wait_ops(30)
    work.finish()
    assert {k: kv.get(k) for k in before} == {k: v.encode() for k, v in before.items()}
    work.check(kv)


@pytest.mark.parametrize(
    ("dying_executor", "left_in"),
    [(_DiesBeforeActivate, Phase.FROZEN), (_FlipsWithoutActivate, Phase.OWNERSHIP_FLIPPED)],
    ids=["died-before-activate", "flipped-without-activate"],
)
def test_a_dead_executor_s_frozen_slots_are_finished_by_a_new_run(
    cluster: LocalCluster, dying_executor: type[_DiesBeforeActivate], left_in: Phase
) -> None:
    """The run died after the freeze, before the target activated: the target holds a copy
    without the final pass. A new run gives it a whole new copy from the frozen source, so
    nothing written during the copy is lost, and the history stays linearizable."""
    seeds = ",".join(cluster.addresses)
    with LeaderCalls(cluster.addresses) as calls, Client(seeds) as kv:
        meta = calls.meta_state()
        slots = [s for a, b, g in meta.owners if g == 2 for s in range(a, b + 1)][:6]
        before, work = _moved_to_3_by_a_dying_executor(calls, kv, seeds, slots, dying_executor)
        left = calls.meta_state().migrations
        assert {m.phase for m in left} == {left_in}, left
        reports = Executor(calls, batch=8).run()
        assert {r.outcome for r in reports} == {"done"}
        assert calls.meta_state().migrations == ()
        assert all(calls.meta_state().owner(s) == 3 for s in slots)
        _check_nothing_lost(kv, before, work)


def test_abort_finishes_a_frozen_migration_instead_of_rolling_it_back(
    cluster: LocalCluster,
) -> None:
    """FROZEN is the point of no return: the meta group refuses to abort, and the
    executor's abort finishes such a move (a target may already serve it)."""
    seeds = ",".join(cluster.addresses)
    with LeaderCalls(cluster.addresses) as calls, Client(seeds) as kv:
        meta = calls.meta_state()
        slots = [s for a, b, g in meta.owners if g == 3 for s in range(a, b + 1)][:4]
        before = _bulk(kv, keys_in(slots, 10), "v")
        dying = _DiesBeforeFreeze(calls, batch=8)
        dying.plan([(s, 1) for s in slots])
        with pytest.raises(_Died):
            dying.run()
        left = calls.meta_state().migrations
        assert {m.phase for m in left} == {Phase.FROZEN}, left
        reports = Executor(calls, batch=8).abort()
        assert {r.outcome for r in reports} == {"done"}
        assert calls.meta_state().migrations == ()
        assert all(calls.meta_state().owner(s) == 1 for s in slots)
        assert {k: kv.get(k) for k in before} == {k: v.encode() for k, v in before.items()}


def test_the_meta_leader_finishes_decided_moves_whose_executor_died(cluster_factory: Any) -> None:
    """No operator: the executor died after the freeze (the slots' writes are held at the
    target); the node leading the meta group notices the moves made no progress for
    ``--finish-stalled-moves-after`` seconds and finishes them itself. Moves that were only
    planned (not decided) stay as they are: they are the operator's to resume or abort."""
    c: LocalCluster = cluster_factory(
        3, tick_ms=20, groups=3, replicas=3, extra_args=("--finish-stalled-moves-after", "1")
    )
    c.start()
    seeds = ",".join(c.addresses)
    with LeaderCalls(c.addresses) as calls, Client(seeds) as kv:
        meta = calls.meta_state()
        group2 = [s for a, b, g in meta.owners if g == 2 for s in range(a, b + 1)]
        slots, planned_only = group2[:6], group2[6:9]
        before, work = _moved_to_3_by_a_dying_executor(calls, kv, seeds, slots, _DiesBeforeActivate)
        Executor(calls).plan([(s, 1) for s in planned_only])

        def finished() -> bool:
            m = calls.meta_state()
            return all(m.owner(s) == 3 for s in slots) and all(
                x.slot not in slots for x in m.migrations
            )

        c.wait_until("the meta leader to finish the frozen moves", finished, timeout=60)
        left = calls.meta_state().migrations
        assert sorted((m.slot, m.phase) for m in left) == [(s, Phase.PENDING) for s in planned_only]
        _check_nothing_lost(kv, before, work)


def test_an_import_chunk_with_a_key_of_another_slot_is_refused_at_the_edge(
    cluster: LocalCluster,
) -> None:
    """A key stored under a slot it does not hash to could be neither found nor moved:
    the node refuses the chunk (and its batch) before proposing anything."""
    good, stray = "in-slot", "elsewhere"
    slot = key_slot(good)
    assert key_slot(stray) != slot
    with LeaderCalls(cluster.addresses) as calls, Client(",".join(cluster.addresses)) as kv:
        target = next(g for a, b, g in calls.meta_state().owners if not a <= slot <= b)
        v = encode_value(b"v", 0)
        chunk = ImportChunk(0, slot, 1, 1, 1, ((good.encode(), v), (stray.encode(), v)))
        with pytest.raises(StepRefused, match=r"holds key b'elsewhere', which is in slot "):
            calls.propose(target, [encode_command(chunk)])
        assert kv.get(stray) is None and kv.get(good) is None
