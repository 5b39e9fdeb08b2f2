#!/usr/bin/env python3
"""Entries committed per CPU-second by the pure Raft core: a 3-node group in one process.

Each round the leader proposes a batch of B entries (64-byte payloads); every node's Ready is
persisted to MemoryStorage, its messages delivered, its committed entries applied, until the
group is quiet. The figure is entries committed (and applied on all three nodes) divided by
the process CPU time — it measures the core, not I/O. JSON on the last line:

    {"batch_1": <entries/cpu-s>, "batch_64": <entries/cpu-s>, ...}

Usage: python scripts/bench_raft_core.py [--entries N] [--batches 1,64]
"""

from __future__ import annotations

import argparse
import json
import random
import time

from kvcluster.raft import Config, MemoryStorage, RawNode, StateRole


def run(batch: int, total: int) -> dict[str, float]:
    ids = (1, 2, 3)
    stores = {i: MemoryStorage(voters=ids) for i in ids}
    nodes = {i: RawNode(Config(id=i), stores[i], random.Random(i)) for i in ids}
    applied = dict.fromkeys(ids, 0)
    inbox: dict[int, list] = {i: [] for i in ids}

    def pump() -> None:
        busy = True
        while busy:
            busy = False
            for i, n in nodes.items():
                if n.has_ready():
                    busy = True
                    rd = n.ready()
                    st = stores[i]
                    if rd.entries:
                        st.append(rd.entries)
                    if rd.hard_state is not None:
                        st.set_hard_state(rd.hard_state)
                    for m in rd.messages:
                        inbox[m.to].append(m)
                    applied[i] += len(rd.committed_entries)
                    n.advance(rd)
            for i, n in nodes.items():
                msgs = inbox[i]
                if msgs:
                    busy = True
                    inbox[i] = []
                    for m in msgs:
                        n.step(m)

    nodes[1].campaign()
    pump()
    assert nodes[1].status().role == StateRole.LEADER
    payload = bytes(64)
    base = dict(applied)
    rounds = max(1, total // batch)
    t0 = time.process_time()
    for _ in range(rounds):
        nodes[1].propose_many([payload] * batch)
        pump()
    cpu = time.process_time() - t0
    done = min(applied[i] - base[i] for i in ids)
    assert done == rounds * batch, (done, rounds * batch)
    return {"entries": done, "cpu_s": round(cpu, 3), "entries_per_cpu_s": round(done / cpu)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=64_000)
    ap.add_argument("--batches", default="1,64")
    args = ap.parse_args()
    result: dict[str, object] = {}
    for b in (int(x) for x in args.batches.split(",")):
        total = args.entries if b > 1 else min(args.entries, 20_000)
        r = run(b, total)
        print(
            f"batch {b:>4}: {r['entries']:>7} entries in {r['cpu_s']:.2f} CPU-s "
            f"= {r['entries_per_cpu_s']:,} entries/CPU-s"
        )
        result[f"batch_{b}"] = r["entries_per_cpu_s"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
