#!/usr/bin/env python3
"""Benchmark online slot migration (``kvcluster.reshard.Executor``) on a live cluster.

Contract:
- Measures, never asserts. Progress goes to stderr; ONE JSON object is the last line of
  stdout. Targets (from the issue) are reported in ``targets_met``, not enforced.
- Starts its own ``LocalCluster`` (3 nodes, 3 shard groups x 3 replicas, fsync on, default
  tick) and stops it in ``finally``. Where the elections put the leaders is in the JSON
  (``setup.leaders_at_start``): on shared cores it moves the figures (see the README).
  ``--node-args`` adds kvcluster-server flags to its nodes (e.g. a ``--snapshot-entries``).
  ``--cluster HOST:PORT,...`` uses an existing cluster instead: it must have no unfinished
  migrations, and the slots moved stay moved.
- The executor runs in a child process (as ``kvctl reshard`` would), so its CPU does not
  compete for this process's GIL with the load generators. Timestamps are
  ``time.monotonic()`` (CLOCK_MONOTONIC: comparable across the two processes).
  ``--parallel`` and ``--batch`` (0: the executor's default) configure it.
- Phases:
  1. big slot: one slot filled with ``--keys`` keys (one hash tag, 64-byte values, mset
     batches), moved alone (parallel=1) with no other load. ``seconds_per_10k_key_slot`` is
     the ``Executor.run()`` wall time scaled to 10,000 keys (exact when ``--keys 10000``).
  2. cutover: ``--cutover-slots`` slots, each pre-filled with ``--cutover-keys`` keys, moved
     in rounds of ``--round-slots`` slots, one ``Executor.run()`` per round (executor
     ``--parallel`` and ``--batch``; it cuts a wave of slots over together). During a
     round, one thread per slot (its own ``Client``, default retry settings) writes one
     key of that slot in a closed loop, from 0.5 s before ``run()`` to 0.3 s after it.
     This process's cyclic GC is off during a round (``no_gc_pauses``).
  3. throughput: ``--threads`` closed-loop clients (50% set, 50% linearizable get, random
     keys of a 10,000-key space over all slots, 64-byte values). Steady window:
     ``--seconds`` before the reshard; during window: the ``run()`` of ``--slots`` slots
     (each pre-filled with ``--fill-keys`` keys; slots picked by hash tag, so scattered),
     executor ``--parallel`` and ``--batch``.
- Cutover definition (also in the JSON as ``cutover_definition``): for each slot of phase
  2, let c_1 < c_2 < ... be the completion times of the writer's successful writes, and
  L the median latency of its successful writes completed before the round's ``run()``
  started. unavailability = max(0, max{c_{i+1} - c_i : c_{i+1} > run start} - L); an
  interval still open when the writer stops counts up to the stop time. ``cutover_p50_ms``
  and ``cutover_p99_ms`` are percentiles (nearest rank) of that over the slots.
  ``server_cutover_*`` are percentiles of ``SlotReport.cutover_ms`` (Freeze sent ->
  Activate applied, measured by the executor). ``write_before_*`` are percentiles of the
  writers' own write latency before each round's ``run()`` starts: what one commit costs
  at this load (a cutover is two in a row, see the README).
- Where time goes: the executor's ``LeaderCalls`` is wrapped to time every propose and scan
  (decoding each command to name it costs ~1 ms per 500-key chunk, in the executor
  process). Per phase, ``steps`` totals them by step and ``executor_cutover_segments_ms``
  splits each slot's cutover (Freeze ... Activate: from the Freeze on, the source sends
  clients to the target with ASK, and the target serves them once Activate is applied;
  then the flip and Release). ``--skip 1,3`` runs only some phases.

Run (about 1.5 minutes on the 2-core machine):
    .venv/bin/python scripts/bench_reshard.py
    .venv/bin/python scripts/bench_reshard.py --seconds 10 --slots 1000 --parallel 2 --keys 10000
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import itertools
import json
import multiprocessing as mp
import os
import random
import shlex
import statistics
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

from kvcluster.bench import proc_cpu
from kvcluster.client import Client
from kvcluster.errors import KvClusterError
from kvcluster.kv.commands import decode_command
from kvcluster.local import LocalCluster
from kvcluster.meta import META_GROUP, MetaState
from kvcluster.reshard import Executor, LeaderCalls
from kvcluster.sharding import key_slot
from kvcluster.v1 import admin_pb2

VALUE = bytes(random.Random(1).getrandbits(8) for _ in range(64))
LOAD_KEYS = 10_000
WARMUP_S = 0.5  # writers run this long before a wave's run() starts
TAIL_S = 0.3  # and this long after it returns
CUTOVER_DEFINITION = (
    "per slot: max interval between consecutive successful write completions on one key of "
    "the slot (closed-loop writer, default Client retries), over intervals ending after the "
    "executor's run() started (an interval open at writer stop counts to the stop), minus "
    "that writer's median write latency before run() started; floored at 0"
)

Step = tuple[str, tuple[int, ...], float, float, int]  # name, slots, start, end, keys


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1); None for no values."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def r2(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


def _as_list(x: Any) -> list[Any]:
    return list(x) if isinstance(x, list | tuple) else [x]


class TimedCalls(LeaderCalls):
    """``LeaderCalls`` that records every propose and scan: (step, slots, start, end, keys).
    Accepts one command or a list, one slot or a list (the executor's API has had both)."""

    def __init__(self, seeds: list[str]) -> None:
        super().__init__(seeds)
        self.steps: list[Step] = []
        self.slot_of: dict[int, int] = {}  # migration id -> slot
        self._steps_lock = threading.Lock()

    def _record(self, name: str, slots: list[int], t0: float, keys: int = 0) -> None:
        with self._steps_lock:
            self.steps.append((name, tuple(slots), t0, time.monotonic(), keys))

    def _describe(self, group: int, commands: list[bytes]) -> tuple[str, list[int], int]:
        names: list[str] = []
        slots: list[int] = []
        keys = 0
        for c in commands:
            if group == META_GROUP:
                d = json.loads(c)
                names.append(f"meta:{d.get('phase') or d.get('op')}")
                ids = [d["id"]] if "id" in d else d.get("ids", [])
                slots.extend(self.slot_of[int(i)] for i in ids if int(i) in self.slot_of)
                slots.extend(int(m[0]) for m in d.get("moves", ()))
            else:
                cmd: Any = decode_command(c)
                names.append(type(cmd).__name__)
                slots.append(int(getattr(cmd, "slot", -1)))
                keys += len(getattr(cmd, "puts", ()))
        return "+".join(sorted(set(names))), sorted(set(slots)), keys

    def propose(self, group: int, commands: Any, *args: Any, **kwargs: Any) -> Any:
        name, slots, keys = self._describe(group, _as_list(commands))
        t0 = time.monotonic()
        try:
            return super().propose(group, commands, *args, **kwargs)
        finally:
            self._record(name, slots, t0, keys)

    def scan(self, group: int, slots: Any, kind: int, *args: Any, **kwargs: Any) -> Any:
        t0 = time.monotonic()
        try:
            return super().scan(group, slots, kind, *args, **kwargs)
        finally:
            self._record(f"Scan{admin_pb2.ScanKind.Name(kind)}", _as_list(slots), t0)


def worker_main(conn: Connection, seeds: list[str]) -> None:
    """Serve jobs ``(moves, parallel, batch)`` until ``None``: plan, run, send back the
    timings (``batch`` 0: the executor's default)."""
    calls = TimedCalls(seeds)
    try:
        while True:
            job = conn.recv()
            if job is None:
                return
            moves, parallel, batch = job
            try:
                calls.steps = []
                opts = {"batch": batch} if batch else {}
                ex = Executor(calls, parallel=parallel, **opts)
                p0 = time.monotonic()
                meta = ex.plan(moves)
                calls.slot_of = {m.migration_id: m.slot for m in meta.migrations}
                t0 = time.monotonic()
                reports = ex.run()
                t1 = time.monotonic()
                conn.send(
                    {
                        "plan_s": t0 - p0,
                        "t0": t0,
                        "t1": t1,
                        "reports": [dataclasses.asdict(r) for r in reports],
                        "steps": calls.steps,
                        "cpu_s": time.process_time(),
                    }
                )
            except Exception as e:  # reported by the parent
                conn.send({"error": f"{type(e).__name__}: {e}"})
    finally:
        calls.close()


class Reshard:
    """The parent's handle on the executor process."""

    def __init__(self, seeds: list[str]) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, args=(child, seeds), daemon=True)
        self.proc.start()
        child.close()

    def move(self, moves: list[tuple[int, int]], parallel: int, batch: int = 0) -> dict[str, Any]:
        self._conn.send((moves, parallel, batch))
        res: dict[str, Any] = self._conn.recv()
        if "error" in res:
            raise RuntimeError(f"executor failed: {res['error']}")
        bad = [r for r in res["reports"] if r["outcome"] != "done"]
        if bad:
            raise RuntimeError(f"{len(bad)} migrations did not finish: {bad[:3]}")
        return res

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(None)
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=5)


# -- cluster helpers --------------------------------------------------------------------------
def layout(seeds: list[str]) -> MetaState:
    with LeaderCalls(seeds) as calls:
        return calls.meta_state()


def owners_of(meta: MetaState) -> dict[int, int]:
    return {s: g for first, last, g in meta.owners for s in range(first, last + 1)}


def next_group(meta: MetaState, group: int) -> int:
    gs = sorted(meta.groups)
    return gs[(gs.index(group) + 1) % len(gs)]


def tags_for_new_slots(n: int, used: set[int], prefix: str) -> Iterator[tuple[str, int]]:
    """``n`` hash tags whose slots are distinct and not in ``used`` (which is updated)."""
    i = found = 0
    while found < n:
        tag = f"{prefix}{i}"
        i += 1
        slot = key_slot(tag)
        if slot in used:
            continue
        used.add(slot)
        found += 1
        yield tag, slot


def fill(kv: Client, keys: list[str], batch: int = 500) -> None:
    for i in range(0, len(keys), batch):
        kv.mset(dict.fromkeys(keys[i : i + batch], VALUE))


_NODE_SERIES = ("kvcluster_persist_seconds_sum", "kvcluster_persist_seconds_count")


def node_series(http_addrs: list[str]) -> dict[str, float]:
    """The persist histogram's sum and count (write + fsync of one Ready batch, every group
    of the node in one LMDB transaction), added over the nodes; empty if one is silent."""
    out = dict.fromkeys(_NODE_SERIES, 0.0)
    for addr in http_addrs:
        try:
            with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name in out:
                out[name] += float(value)
    return out


def node_window(a: dict[str, float], b: dict[str, float], seconds: float, n: int) -> dict[str, Any]:
    """What the nodes' storage did between two ``node_series`` samples: % of the time a node
    spent persisting, persists per second per node, mean ms per persist."""
    if not a or not b:
        return {}
    d = {k: b[k] - a[k] for k in _NODE_SERIES}
    per = d["kvcluster_persist_seconds_count"]
    busy = d["kvcluster_persist_seconds_sum"]
    return {
        "persist_busy_pct": round(100 * busy / seconds / n, 1),
        "persists_per_s": round(per / seconds / n, 1),
        "persist_mean_ms": round(1000 * busy / per, 2) if per else None,
    }


def step_totals(steps: list[Step]) -> dict[str, dict[str, float]]:
    """Per step name: calls, total seconds, p50/max ms."""
    by: dict[str, list[float]] = defaultdict(list)
    for name, _, t0, t1, _ in steps:
        by[name].append(t1 - t0)
    return {
        name: {
            "calls": len(d),
            "total_s": round(sum(d), 3),
            "p50_ms": round((pct(d, 0.5) or 0) * 1000, 2),
            "max_ms": round(max(d) * 1000, 2),
        }
        for name, d in sorted(by.items(), key=lambda kv: -sum(kv[1]))
    }


def cutover_steps(steps: list[Step]) -> dict[str, list[float]]:
    """Per slot, the executor's calls naming it from its Freeze to its Release (both
    included), as ms per step name (calls of one name added up; some run at the same time,
    so they need not add up to the total); and Freeze start to the end of the call that
    activates the target (the end of the cutover for clients) and of Release. Step names
    are joined with "+" when one proposal carries several kinds."""

    def has(name: str, kind: str) -> bool:
        return kind in name.split("+")

    by_slot: dict[int, list[Step]] = defaultdict(list)
    for s in steps:
        for slot in s[1]:
            by_slot[slot].append(s)
    out: dict[str, list[float]] = defaultdict(list)
    for ss in by_slot.values():
        ss.sort(key=lambda s: s[2])
        freeze = next((s for s in ss if has(s[0], "Freeze")), None)
        if freeze is None:
            continue
        f0 = freeze[2]
        release = next((s for s in ss if s[2] >= f0 and has(s[0], "Release")), None)
        until = release[3] if release else float("inf")
        per: dict[str, float] = defaultdict(float)
        for name, _, t0, t1, _ in ss:
            if t0 >= f0 and t1 <= until:
                per[name] += (t1 - t0) * 1000
        for name, ms in per.items():
            out[name].append(ms)
        activate = next((s for s in ss if s[2] >= f0 and has(s[0], "Activate")), None)
        if activate:
            out["(freeze_to_activate)"].append((activate[3] - f0) * 1000)
        if release:
            out["(freeze_to_release)"].append((release[3] - f0) * 1000)
    return out


def summarize_ms(d: dict[str, list[float]]) -> dict[str, dict[str, float | None]]:
    return {k: {"p50": r2(pct(v, 0.5)), "p99": r2(pct(v, 0.99))} for k, v in d.items()}


# -- phase 1: one big slot --------------------------------------------------------------------
def phase_big_slot(
    seeds: list[str], reshard: Reshard, used: set[int], n_keys: int
) -> dict[str, Any]:
    meta = layout(seeds)
    owners = owners_of(meta)
    ((tag, slot),) = tags_for_new_slots(1, used, "big")
    keys = [f"{{{tag}}}:{i:07d}" for i in range(n_keys)]
    assert all(key_slot(k) == slot for k in keys[:10])
    log(f"phase 1: filling slot {slot} (group {owners[slot]}) with {n_keys} keys")
    t = time.monotonic()
    with Client(seeds, timeout=10.0) as kv:
        fill(kv, keys)
    fill_s = time.monotonic() - t
    log(f"  filled in {fill_s:.1f} s; moving it to group {next_group(meta, owners[slot])}")
    res = reshard.move([(slot, next_group(meta, owners[slot]))], 1)
    run_s = res["t1"] - res["t0"]
    (rep,) = res["reports"]
    with Client(seeds, timeout=10.0) as kv:
        sample: list[bytes | str] = list(random.Random(3).sample(keys, min(200, len(keys))))
        verified = kv.mget(sample) == [VALUE] * len(sample)
    steps: list[Step] = res["steps"]
    begin = min((s[2] for s in steps if "ImportBegin" in s[0].split("+")), default=res["t0"])
    freeze = min((s[2] for s in steps if "Freeze" in s[0].split("+")), default=res["t1"])
    log(
        f"  moved in {run_s:.2f} s ({n_keys / run_s:,.0f} keys/s), server cutover "
        f"{rep['cutover_ms']:.1f} ms, sample verified: {verified}"
    )
    return {
        "slot": slot,
        "keys": n_keys,
        "fill_s": round(fill_s, 2),
        "plan_s": round(res["plan_s"], 3),
        "run_s": round(run_s, 3),
        "bulk_copy_s": round(freeze - begin, 3),
        "keys_copied": rep["keys"],
        "bytes_copied": rep["bytes"],
        "server_cutover_ms": round(rep["cutover_ms"], 2),
        "sample_verified": verified,
        "steps": step_totals(steps),
    }


# -- phase 2: cutover as clients see it ---------------------------------------------------------
class SlotWriter(threading.Thread):
    """Writes one key in a closed loop; records (start, end) of each successful write."""

    def __init__(self, seeds: list[str], key: str, stop: threading.Event) -> None:
        super().__init__(daemon=True, name=f"writer-{key}")
        self.seeds, self.key, self.stop_ev = seeds, key, stop
        self.ok: list[tuple[float, float]] = []
        self.errors = 0
        self.error_kinds: Counter[str] = Counter()
        self.error_example = ""
        self.stopped_at = 0.0

    def run(self) -> None:
        with Client(self.seeds, timeout=5.0) as kv:
            kv.refresh_slots()
            while not self.stop_ev.is_set():
                t0 = time.monotonic()
                try:
                    kv.set(self.key, VALUE)
                except KvClusterError as e:
                    self.errors += 1
                    self.error_kinds[type(e).__name__] += 1
                    self.error_example = self.error_example or f"{self.key}: {e}"
                    continue
                self.ok.append((t0, time.monotonic()))
        self.stopped_at = time.monotonic()

    def latencies_before(self, run_start: float) -> list[float]:
        """Latency in ms of each successful write completed before ``run_start`` (no move of
        its slot in the way: what one Raft commit costs at this load)."""
        return [(e - s) * 1000 for s, e in self.ok if e < run_start]

    def unavailability_ms(self, run_start: float) -> tuple[float, float, float]:
        """(unavailability, max gap, typical latency) in ms, as the module docstring says."""
        pre = self.latencies_before(run_start)
        typical = statistics.median(pre) / 1000 if pre else 0.0
        ends = [e for _, e in self.ok]
        gaps = [b - a for a, b in itertools.pairwise(ends) if b > run_start]
        last = ends[-1] if ends else run_start
        gaps.append(self.stopped_at - max(last, run_start))  # open at stop
        straddle = [e for e in ends if e <= run_start]
        if not straddle and ends:  # no completion before run start: count from run start
            gaps.append(ends[0] - run_start)
        worst = max(gaps)
        return max(0.0, worst - typical) * 1000, worst * 1000, typical * 1000


@contextlib.contextmanager
def no_gc_pauses() -> Iterator[None]:
    """No cyclic-GC pass in this process while a round is measured: one (up to ~30 ms here,
    over the writers' records) stops every writer thread at once and would be counted as the
    cluster's unavailability. The garbage is collected between rounds."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def phase_cutover(
    seeds: list[str],
    reshard: Reshard,
    used: set[int],
    n_slots: int,
    round_slots: int,
    keys_per_slot: int,
    parallel: int,
    batch: int,
) -> dict[str, Any]:
    meta = layout(seeds)
    owners = owners_of(meta)
    tags = list(tags_for_new_slots(n_slots, used, "cut"))
    log(f"phase 2: filling {n_slots} slots with {keys_per_slot} keys each")
    with Client(seeds, timeout=10.0) as kv:
        fill(kv, [f"{{{t}}}:{i:05d}" for t, _ in tags for i in range(keys_per_slot)])
    unavail: list[float] = []
    rows: list[dict[str, Any]] = []
    server: list[float] = []
    before: list[float] = []
    steps: list[Step] = []
    errors = 0
    error_kinds: Counter[str] = Counter()
    error_example = ""
    rounds = -(-n_slots // round_slots)
    for w in range(0, n_slots, round_slots):
        part = tags[w : w + round_slots]
        stop = threading.Event()
        writers = [SlotWriter(seeds, f"{{{t}}}:w", stop) for t, _ in part]
        with no_gc_pauses():
            for th in writers:
                th.start()
            time.sleep(WARMUP_S)
            try:
                moves = [(s, next_group(meta, owners[s])) for _, s in part]
                res = reshard.move(moves, parallel, batch)
            finally:
                time.sleep(TAIL_S)
                stop.set()
                for th in writers:
                    th.join(timeout=30)
        by_slot = {r["slot"]: r for r in res["reports"]}
        steps.extend(res["steps"])
        for (_, slot), th in zip(part, writers, strict=True):
            u, gap, typ = th.unavailability_ms(res["t0"])
            unavail.append(u)
            before.extend(th.latencies_before(res["t0"]))
            server.append(by_slot[slot]["cutover_ms"])
            errors += th.errors
            error_kinds.update(th.error_kinds)
            error_example = error_example or th.error_example
            rows.append(
                {
                    "slot": slot,
                    "unavail_ms": round(u, 1),
                    "max_gap_ms": round(gap, 1),
                    "typical_ms": round(typ, 1),
                    "server_cutover_ms": round(by_slot[slot]["cutover_ms"], 1),
                    "writes": len(th.ok),
                    "errors": th.errors,
                }
            )
        log(
            f"  round {w // round_slots + 1}/{rounds}: {len(part)} slots, run "
            f"{res['t1'] - res['t0']:.2f} s, client unavailability p50/max "
            f"{pct(unavail[-len(part) :], 0.5):.0f}/{max(unavail[-len(part) :]):.0f} ms, "
            f"server cutover max {max(server[-len(part) :]):.0f} ms"
        )
    worst = sorted(rows, key=lambda r: -r["unavail_ms"])[:5]
    return {
        "slots": n_slots,
        "slots_per_round": round_slots,
        "keys_per_slot": keys_per_slot,
        "cutover_p50_ms": r2(pct(unavail, 0.5)),
        "cutover_p99_ms": r2(pct(unavail, 0.99)),
        "cutover_max_ms": r2(max(unavail)),
        "server_cutover_p50_ms": r2(pct(server, 0.5)),
        "server_cutover_p99_ms": r2(pct(server, 0.99)),
        "write_before_p50_ms": r2(pct(before, 0.5)),
        "write_before_p99_ms": r2(pct(before, 0.99)),
        "writer_errors": errors,
        "writer_error_kinds": dict(error_kinds),
        "writer_error_example": error_example,
        "worst_slots": worst,
        "executor_cutover_segments_ms": summarize_ms(cutover_steps(steps)),
        "steps": step_totals(steps),
    }


# -- phase 3: throughput during a reshard ----------------------------------------------------
class Load:
    """``threads`` closed-loop clients, 50% set / 50% get over LOAD_KEYS keys."""

    def __init__(self, seeds: list[str], threads: int) -> None:
        self.seeds = seeds
        self.stop = threading.Event()
        self.done: list[list[tuple[float, float]]] = [[] for _ in range(threads)]
        self.errors = [0] * threads
        self.error_kinds: Counter[str] = Counter()
        self.error_example = ""
        self._threads = [
            threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(threads)
        ]

    def _loop(self, i: int) -> None:
        rng = random.Random(100 + i)
        out = self.done[i]
        with Client(self.seeds, timeout=5.0) as kv:
            kv.refresh_slots()
            while not self.stop.is_set():
                key = f"load:{rng.randrange(LOAD_KEYS):06d}"
                t0 = time.monotonic()
                try:
                    if rng.random() < 0.5:
                        kv.set(key, VALUE)
                    else:
                        kv.get(key)
                except KvClusterError as e:
                    self.errors[i] += 1
                    self.error_kinds[type(e).__name__] += 1
                    self.error_example = self.error_example or f"{key}: {e}"
                    continue
                out.append((t0, time.monotonic()))

    def start(self) -> None:
        for th in self._threads:
            th.start()

    def join(self) -> None:
        self.stop.set()
        for th in self._threads:
            th.join(timeout=30)

    def window(self, a: float, b: float) -> dict[str, Any]:
        lat = [e - s for d in self.done for s, e in d if a <= e < b]
        return {
            "ops_s": round(len(lat) / (b - a), 1),
            "p50_ms": r2((pct(lat, 0.5) or 0) * 1000),
            "p99_ms": r2((pct(lat, 0.99) or 0) * 1000),
            "seconds": round(b - a, 2),
        }


def phase_throughput(
    seeds: list[str],
    reshard: Reshard,
    used: set[int],
    n_slots: int,
    keys_per_slot: int,
    parallel: int,
    batch: int,
    threads: int,
    seconds: float,
    node_pids: list[int],
    node_http: list[str],
) -> dict[str, Any]:
    meta = layout(seeds)
    owners = owners_of(meta)
    tags = list(tags_for_new_slots(n_slots, used, "tp"))
    log(
        f"phase 3: filling {LOAD_KEYS} load keys and {n_slots} slots x {keys_per_slot} keys to move"
    )
    with Client(seeds, timeout=10.0) as kv:
        fill(kv, [f"load:{i:06d}" for i in range(LOAD_KEYS)])
        if keys_per_slot:
            fill(kv, [f"{{{t}}}:{i:05d}" for t, _ in tags for i in range(keys_per_slot)])
    load = Load(seeds, threads)
    load.start()
    try:
        time.sleep(1.0)  # warm-up
        s0, c0, m0 = time.monotonic(), proc_cpu(node_pids), node_series(node_http)
        log(f"  steady window: {seconds:.0f} s with {threads} client threads")
        time.sleep(seconds)
        s1, c1, m1 = time.monotonic(), proc_cpu(node_pids), node_series(node_http)
        log(f"  reshard of {n_slots} slots (parallel {parallel}, batch {batch or 'default'})")
        res = reshard.move([(s, next_group(meta, owners[s])) for _, s in tags], parallel, batch)
        s2, c2, m2 = time.monotonic(), proc_cpu(node_pids), node_series(node_http)
        time.sleep(0.2)
    finally:
        load.join()
    t0, t1 = res["t0"], res["t1"]
    steady = load.window(s0, s1)
    during = load.window(t0, t1)
    server = [r["cutover_ms"] for r in res["reports"]]
    frac = during["ops_s"] / steady["ops_s"] if steady["ops_s"] else 0.0
    log(
        f"  steady {steady['ops_s']:,.0f} ops/s, during {during['ops_s']:,.0f} ops/s "
        f"({frac:.0%}) over a {t1 - t0:.1f} s reshard"
    )
    out: dict[str, Any] = {
        "slots": n_slots,
        "keys_per_slot": keys_per_slot,
        "threads": threads,
        "steady": steady,
        "during": during,
        "reshard_s": round(t1 - t0, 2),
        "slots_per_s": round(n_slots / (t1 - t0), 1),
        "throughput_fraction": round(frac, 3),
        "errors": sum(load.errors),
        "error_kinds": dict(load.error_kinds),
        "error_example": load.error_example,
        "server_cutover_p50_ms": r2(pct(server, 0.5)),
        "server_cutover_p99_ms": r2(pct(server, 0.99)),
        "executor_cutover_segments_ms": summarize_ms(cutover_steps(res["steps"])),
        "steps": step_totals(res["steps"]),
    }
    if node_pids:  # the during window here includes plan() and the child's reply
        out["cluster_cpu_pct_steady"] = round(100 * (c1 - c0) / (s1 - s0), 1)
        out["cluster_cpu_pct_during"] = round(100 * (c2 - c1) / (s2 - s1), 1)
    if node_http:
        n = len(node_http)
        out["node_storage_steady"] = node_window(m0, m1, s1 - s0, n)
        out["node_storage_during"] = node_window(m1, m2, s2 - s1, n)
    if t1 - t0 < 10:
        out["warning"] = "the reshard lasted under 10 s: raise --slots"
    return out


# -- main -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cluster", default=None, help="seeds of an existing cluster")
    ap.add_argument("--seconds", type=float, default=10.0, help="steady window (phase 3)")
    ap.add_argument("--slots", type=int, default=1000, help="slots moved in phase 3")
    ap.add_argument("--fill-keys", type=int, default=50, help="keys per phase-3 slot")
    ap.add_argument("--parallel", type=int, default=2, help="executor parallel (phases 2, 3)")
    ap.add_argument("--batch", type=int, default=0, help="executor batch (0: its default)")
    ap.add_argument("--keys", type=int, default=10_000, help="keys in the big slot (1)")
    ap.add_argument(
        "--cutover-slots",
        type=int,
        default=480,
        help="slots moved in phase 2 (slots of one round share their cutover, so a p99 needs "
        "many rounds: 480 = 20 rounds of 24)",
    )
    ap.add_argument("--round-slots", type=int, default=24, help="phase-2 slots per run()")
    ap.add_argument("--cutover-keys", type=int, default=200, help="keys per phase-2 slot")
    ap.add_argument("--threads", type=int, default=12, help="load threads (phase 3)")
    ap.add_argument("--skip", default="", help="phases to skip, e.g. 1,3")
    ap.add_argument(
        "--node-args",
        default="",
        help="extra kvcluster-server flags for the own cluster, e.g. '--snapshot-entries 100000'",
    )
    args = ap.parse_args(argv)
    skip = {int(p) for p in args.skip.split(",") if p.strip()}

    load_before = os.getloadavg()
    t_start = time.monotonic()
    cluster: LocalCluster | None = None
    reshard: Reshard | None = None
    result: dict[str, Any] = {"bench": "reshard", "cutover_definition": CUTOVER_DEFINITION}
    leaders: dict[str, int] = {}
    try:
        if args.cluster:
            seeds = [s for s in args.cluster.split(",") if s]
            node_pids: list[int] = []
            node_http: list[str] = []
        else:
            node_args = tuple(shlex.split(args.node_args))
            cluster = LocalCluster(3, groups=3, replicas=3, extra_args=node_args)
            log(f"starting a local cluster in {cluster.base_dir}")
            cluster.start()
            seeds = cluster.addresses
            node_pids = [n.pid for n in cluster.nodes.values() if n.pid]
            node_http = [n.http for n in cluster.nodes.values()]
        if cluster is not None:  # where the leaders are shapes the figures on shared cores
            st = cluster.status(1)
            leaders = {str(g.group_id): g.leader_id for g in st.groups} if st else {}
        meta = layout(seeds)
        if meta.migrations:
            raise SystemExit(f"{len(meta.migrations)} unfinished migrations; resume them first")
        used: set[int] = set()
        reshard = Reshard(seeds)
        if 1 not in skip:
            result["big_slot"] = phase_big_slot(seeds, reshard, used, args.keys)
        if 2 not in skip:
            result["cutover"] = phase_cutover(
                seeds, reshard, used, args.cutover_slots, args.round_slots, args.cutover_keys,
                args.parallel, args.batch,
            )  # fmt: skip
        if 3 not in skip:
            result["throughput"] = phase_throughput(
                seeds, reshard, used, args.slots, args.fill_keys, args.parallel, args.batch,
                args.threads, args.seconds, node_pids, node_http,
            )  # fmt: skip
    finally:
        if reshard is not None:
            reshard.close()
        if cluster is not None:
            log("stopping the cluster")
            cluster.stop()

    big = result.get("big_slot")
    cut = result.get("cutover")
    tp = result.get("throughput")
    if big:
        result["seconds_per_10k_key_slot"] = round(big["run_s"] * 10_000 / big["keys"], 3)
        result["keys_per_s"] = round(big["keys"] / big["run_s"], 1)
    if cut:
        for k in (
            "cutover_p50_ms",
            "cutover_p99_ms",
            "server_cutover_p50_ms",
            "server_cutover_p99_ms",
        ):
            result[k] = cut[k]
    if tp:
        result["steady_ops_s"] = tp["steady"]["ops_s"]
        result["during_ops_s"] = tp["during"]["ops_s"]
        result["throughput_fraction"] = tp["throughput_fraction"]
        result["errors"] = tp["errors"] + (cut["writer_errors"] if cut else 0)
    result["targets_met"] = {
        "cutover_p99_le_100ms": None if not cut else cut["cutover_p99_ms"] <= 100,
        "throughput_fraction_ge_0.5": None if not tp else tp["throughput_fraction"] >= 0.5,
    }
    result["setup"] = {
        "cluster": args.cluster or "local: 3 nodes, 3 groups x 3 replicas, fsync on",
        "parallel": args.parallel,
        "batch": args.batch or "executor default",
        "node_args": args.node_args,
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "total_s": round(time.monotonic() - t_start, 1),
        "leaders_at_start": leaders,  # group -> node id (group 0: the meta group)
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
