#!/usr/bin/env python3
"""What the client's request stream saves the nodes: unary ``KV/Execute`` per write against
the synchronous ``Client`` (one ``KV/Pipeline`` stream per node, shared by its threads).

Its own local cluster (3 nodes, 3 groups x 3 replicas, fsync on). ``--threads`` closed-loop
writers in this process, one key each (64-byte values, each write with its own session);
for each mode in turn (alternating, ``--rounds`` times): ``--seconds`` of load after a 2 s
warm-up. Reported per run: writes/s, latency p50/p99, the nodes' CPU (% of one core, all
three together) and CPU ms per write, and this process's CPU. Leaders are wherever the
elections put them (the same cluster for every run, so the modes see the same placement).

    unary   each writer calls KV/Execute with one request (what the client did before)
    client  each writer calls Client.set (the stream; the client's retry logic included)

JSON on the last line. Usage:
    .venv/bin/python scripts/bench_client_stream.py [--threads 24] [--seconds 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import threading
import time
from typing import Any

import grpc

from kvcluster.bench import proc_cpu
from kvcluster.client import Client
from kvcluster.client.sync import CHANNEL_OPTIONS
from kvcluster.local import LocalCluster
from kvcluster.v1 import kv_pb2, kv_pb2_grpc

VALUE = b"v" * 64
WARMUP_S = 2.0


def run(c: LocalCluster, mode: str, threads: int, seconds: float) -> dict[str, Any]:
    seeds = c.addresses
    keys = [f"{{bench{i}}}:w".encode() for i in range(threads)]
    with Client(seeds) as kv:
        kv.refresh_slots()
        leader_of = {k: kv._cache.target(kv._cache.slot(k)) for k in keys}
    channels = {a: grpc.insecure_channel(a, options=CHANNEL_OPTIONS) for a in seeds}
    stubs = {a: kv_pb2_grpc.KVStub(ch) for a, ch in channels.items()}
    stop = threading.Event()
    lat: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads

    def unary(i: int) -> None:
        stub, key = stubs[leader_of[keys[i]]], keys[i]
        cid, seq = random.getrandbits(63) | 1, 0
        while not stop.is_set():
            seq += 1
            req = kv_pb2.Request(op=kv_pb2.SET, key=key, value=VALUE, client_id=cid, seq=seq)
            t0 = time.monotonic()
            r = stub.Execute(kv_pb2.BatchRequest(requests=[req]), timeout=5).responses[0]
            if r.status != kv_pb2.OK:
                errors[i] += 1
                continue
            lat[i].append(time.monotonic() - t0)

    def client(i: int) -> None:
        with Client(seeds, timeout=5.0) as kv:
            kv.refresh_slots()
            while not stop.is_set():
                t0 = time.monotonic()
                kv.set(keys[i], VALUE)
                lat[i].append(time.monotonic() - t0)

    workers = [
        threading.Thread(target=unary if mode == "unary" else client, args=(i,), daemon=True)
        for i in range(threads)
    ]
    for w in workers:
        w.start()
    time.sleep(WARMUP_S)  # load generation, not synchronisation
    for x in lat:
        x.clear()
    pids = [n.proc.pid for n in c.nodes.values() if n.proc is not None]
    cpu0, me0, t0 = proc_cpu(pids), time.process_time(), time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    cpu1, me1 = proc_cpu(pids), time.process_time()
    done = sorted(x for per in lat for x in per)
    stop.set()
    for w in workers:
        w.join(timeout=30)
    for ch in channels.values():
        ch.close()
    n = len(done)
    return {
        "mode": mode,
        "writes_per_s": round(n / elapsed, 1),
        "p50_ms": round(statistics.median(done) * 1000, 2),
        "p99_ms": round(done[min(n - 1, int(n * 0.99))] * 1000, 2),
        "nodes_cpu_pct": round(100 * (cpu1 - cpu0) / elapsed, 1),
        "nodes_cpu_ms_per_write": round(1000 * (cpu1 - cpu0) / n, 3),
        "bench_process_cpu_pct": round(100 * (me1 - me0) / elapsed, 1),
        "errors": sum(errors),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    runs = []
    with LocalCluster(3, groups=3, replicas=3) as c:
        c.start()
        leaders = {g: c.wait_for_leader(group=g) for g in range(4)}
        for _ in range(args.rounds):
            for mode in ("unary", "client"):
                r = run(c, mode, args.threads, args.seconds)
                print(json.dumps(r))
                runs.append(r)
    summary = {
        mode: {
            k: round(statistics.mean(r[k] for r in runs if r["mode"] == mode), 3)
            for k in ("writes_per_s", "p50_ms", "p99_ms", "nodes_cpu_ms_per_write")
        }
        for mode in ("unary", "client")
    }
    print(
        json.dumps(
            {
                "bench": "client_stream",
                "threads": args.threads,
                "seconds": args.seconds,
                "leaders": leaders,
                "runs": runs,
                "mean": summary,
            }
        )
    )


if __name__ == "__main__":
    main()
