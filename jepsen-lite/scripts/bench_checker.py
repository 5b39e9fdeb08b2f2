#!/usr/bin/env python3
"""Benchmark the linearizability checker on synthetic histories (deterministic from --seed).

Scenarios (each history comes from `jepsen_lite.synth.simulate`):

- ``many_keys_<model>``: one history of --ops operations over --keys keys by --processes
  clients, 10% info and 5% fail; timed through the whole path the CLI takes (JSON lines text ->
  `parse_jsonl` -> `check_history`). ``..._invalid``: the same with one ok read changed to a
  value never written.
- ``hot_key_<model>``: --runs histories of 100 operations on a single key by 20 clients with
  ~45% of operations ending info (30% chance at each of two points); median and max.
- ``hot_key_<model>_invalid``: the same histories with one ok read changed to a value never
  written; every one must come out invalid.

Prints one line per scenario, then all timings as JSON on the last line. Run from anywhere:

    python jepsen-lite/scripts/bench_checker.py --seed 1
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from functools import partial

from jepsen_lite import Outcome, check_history, get_model, parse_jsonl
from jepsen_lite.synth import simulate


def many_keys(
    model: str, seed: int, ops: int, keys: int, processes: int, *, invalid: bool
) -> dict[str, object]:
    rng = random.Random(seed)
    events = simulate(rng, model, ops=ops, processes=processes, keys=keys, info=0.1, fail=0.05)
    expected = Outcome.VALID
    if invalid:
        reads = [e for e in events if e["type"] == "ok" and e["f"] in ("read", "get")]
        rng.choice(reads)["value"] = "#never written#"
        expected = Outcome.INVALID
    text = [json.dumps(e) for e in events]
    start = time.perf_counter()
    history = parse_jsonl(text, get_model(model))
    parsed = time.perf_counter()
    verdict = check_history(history, model)
    done = time.perf_counter()
    if verdict.outcome is not expected:
        raise SystemExit(f"many_keys {model}: expected {expected}, got {verdict.summary()}")
    return {
        "ops": len(history.ops),
        "keys": len(verdict.keys),
        "parse_s": round(parsed - start, 3),
        "check_s": round(done - parsed, 3),
        "total_s": round(done - start, 3),
        "max_key_s": round(max(r.seconds for r in verdict.keys.values()), 3),
    }


def hot_key(model: str, seed: int, runs: int, *, invalid: bool) -> dict[str, object]:
    times: list[float] = []
    states: list[int] = []
    for run in range(runs):
        rng = random.Random(seed * 1_000_003 + run)
        events = simulate(rng, model, ops=100, processes=20, keys=1, info=0.3, fail=0.05)
        expected = Outcome.VALID
        if invalid:
            reads = [e for e in events if e["type"] == "ok" and e["f"] in ("read", "get")]
            if not reads:
                continue
            rng.choice(reads)["value"] = "#never written#"
            expected = Outcome.INVALID
        start = time.perf_counter()
        verdict = check_history(events, model)
        times.append(time.perf_counter() - start)
        states.append(sum(r.states for r in verdict.keys.values()))
        if verdict.outcome is not expected:
            raise SystemExit(f"hot_key {model} run {run}: expected {expected}, got {verdict}")
    return {
        "runs": len(times),
        "median_s": round(statistics.median(times), 4),
        "p90_s": round(sorted(times)[int(len(times) * 0.9)], 4),
        "max_s": round(max(times), 4),
        "max_states": max(states),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ops", type=int, default=30_000)
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--processes", type=int, default=50)
    parser.add_argument("--runs", type=int, default=50, help="histories per hot-key scenario")
    args = parser.parse_args(argv)

    results: dict[str, object] = {"seed": args.seed, "python": sys.version.split()[0]}
    for model in ("register", "kv"):
        scenarios = {
            f"many_keys_{model}": partial(
                many_keys, model, args.seed, args.ops, args.keys, args.processes, invalid=False
            ),
            f"many_keys_{model}_invalid": partial(
                many_keys, model, args.seed, args.ops, args.keys, args.processes, invalid=True
            ),
            f"hot_key_{model}": partial(hot_key, model, args.seed, args.runs, invalid=False),
            f"hot_key_{model}_invalid": partial(hot_key, model, args.seed, args.runs, invalid=True),
        }
        for name, run in scenarios.items():
            results[name] = result = run()
            print(f"{name:28} {json.dumps(result)}", flush=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
