"""Closed-loop load generator: C callers for S seconds against a cluster, latency percentiles.

Contract: measures, never asserts. With no ``cluster`` it starts its own temporary local
cluster (fsync on, 3 nodes) and stops it afterwards. Keys are 16 bytes and values 64 bytes
over a key space of 10,000 (the shape of ../shared/bench's etcd runs); reads are
linearizable unless ``stale``. The result is a dict (printed as JSON on the last line by the
CLI): workload, concurrency, ops_s, p50_ms, p99_ms, errors, seconds, cpu figures.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass
from typing import Any

from kvcluster.client import AsyncClient
from kvcluster.errors import KvClusterError

__all__ = ["BenchConfig", "proc_cpu", "run_bench"]

KEY_SPACE = 10_000


def _key(i: int) -> bytes:
    return b"bench:%010d" % i  # 16 bytes


@dataclass(frozen=True)
class BenchConfig:
    workload: str = "write"  # write | read
    concurrency: int = 16
    seconds: float = 10.0
    warmup: float = 1.0
    cluster: str | None = None
    stale: bool = False
    nodes: int = 3
    groups: int = 3
    fsync: bool = True


def _percentile(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return float("nan")
    i = min(len(sorted_vals) - 1, max(0, round(q * (len(sorted_vals) - 1))))
    return sorted_vals[i]


async def _load(cfg: BenchConfig, seeds: str) -> dict[str, Any]:
    value = bytes(random.Random(1).getrandbits(8) for _ in range(64))
    async with AsyncClient(seeds, timeout=10.0) as kv:
        if cfg.workload == "read":
            # Preload the key space in batches so reads find values.
            for start in range(0, KEY_SPACE, 500):
                pipe = kv.pipeline()
                for i in range(start, min(KEY_SPACE, start + 500)):
                    pipe.set(_key(i), value)
                await pipe.execute()
        latencies: list[float] = []
        errors = 0
        stop_at = 0.0
        record_from = 0.0

        async def caller(seed: int) -> None:
            nonlocal errors
            rng = random.Random(seed)
            while True:
                now = time.perf_counter()
                if now >= stop_at:
                    return
                k = _key(rng.randrange(KEY_SPACE))
                try:
                    if cfg.workload == "write":
                        await kv.set(k, value)
                    else:
                        await kv.get(k, stale=cfg.stale)
                except KvClusterError:
                    errors += 1
                    continue
                end = time.perf_counter()
                if now >= record_from:
                    latencies.append(end - now)

        t0 = time.perf_counter()
        record_from = t0 + cfg.warmup
        stop_at = record_from + cfg.seconds
        cpu0 = time.process_time()
        await asyncio.gather(*(caller(i) for i in range(cfg.concurrency)))
        cpu = time.process_time() - cpu0
        latencies.sort()
        return {
            "workload": cfg.workload,
            "consistency": "stale" if cfg.stale else "linearizable",
            "concurrency": cfg.concurrency,
            "ops_s": round(len(latencies) / cfg.seconds, 1),
            "p50_ms": round(_percentile(latencies, 0.50) * 1000, 3),
            "p99_ms": round(_percentile(latencies, 0.99) * 1000, 3),
            "ops": len(latencies),
            "errors": errors,
            "seconds": cfg.seconds,
            "client_cpu_pct": round(100 * cpu / (cfg.seconds + cfg.warmup), 1),
        }


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    if cfg.cluster:
        return asyncio.run(_load(cfg, cfg.cluster))
    from kvcluster.local import LocalCluster

    with LocalCluster(cfg.nodes, fsync=cfg.fsync, groups=cfg.groups) as cluster:
        cluster.start()
        pids = [n.pid for n in cluster.nodes.values() if n.pid]
        before = proc_cpu(pids)
        result = asyncio.run(_load(cfg, ",".join(cluster.addresses)))
        after = proc_cpu(pids)
        wall = cfg.seconds + cfg.warmup
        result["cluster_cpu_pct_sum"] = round(100 * (after - before) / wall, 1)
        result["fsync"] = cfg.fsync
        result["nodes"] = cfg.nodes
        result["groups"] = cfg.groups
        return result


def proc_cpu(pids: list[int]) -> float:
    """User+system CPU seconds of the given processes (Linux /proc), 0 where unreadable."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return total
