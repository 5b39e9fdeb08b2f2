#!/usr/bin/env python3
"""Group-commit throughput of the LMDB node store (``NodeStore.persist_ready``).

Prints one JSON document: for 1 group and for 3 groups, each appending 64 entries (plus a
hard state) per transaction, the transactions and entries per second and the per-transaction
latency, in three durability modes:

- ``sync``: the environment opened with LMDB's sync on (what the node uses);
- ``nosync+env.sync``: MDB_NOSYNC and an explicit ``env.sync(True)`` after each commit (the
  alternative that was measured and rejected: it orders nothing between data and meta pages);
- ``nosync``: no flush at all (an upper bound; not durable).

Usage: .venv/bin/python scripts/bench_storage.py [--seconds 2] [--entry-size 128] [--dir DIR]
The data directory must be on the disk you care about (the default is a temp dir).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from kvcluster.raft.types import Entry, HardState
from kvcluster.storage import NodeStore, WriteBatch

MODES = ("sync", "nosync+env.sync", "nosync")


def filesystem_of(path: Path) -> str:
    best, fstype = "", "unknown"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                _, mount, kind, *_ = line.split()
                if str(path.resolve()).startswith(mount) and len(mount) > len(best):
                    best, fstype = mount, kind
    except OSError:
        pass
    return fstype


def fdatasync_p50_ms(root: Path, samples: int = 50) -> float:
    """The disk's own flush latency right now, for context (128 B overwrite + fdatasync)."""
    fd = os.open(root / "probe", os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"\0" * 65536)
        os.fsync(fd)
        lat = []
        for i in range(samples):
            os.pwrite(fd, b"x" * 128, (i * 4096) % 65536)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            lat.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
    return round(statistics.median(lat) * 1e3, 3)


def run(root: Path, groups: int, per_txn: int, entry_size: int, mode: str, seconds: float) -> dict:
    path = root / f"{mode}-{groups}g"
    payload = os.urandom(entry_size)
    with NodeStore(path, sync=(mode == "sync"), map_size=8 << 30) as store:
        for g in range(1, groups + 1):
            store.create_group(g)
        next_index = 1
        latencies: list[float] = []
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            batch = WriteBatch()
            for g in range(1, groups + 1):
                ents = [Entry(1, next_index + k, data=payload) for k in range(per_txn)]
                batch.add(g, entries=ents, hard_state=HardState(1, 1, next_index))
            t0 = time.perf_counter()
            store.persist_ready(batch)
            if mode == "nosync+env.sync":
                store.sync()
            t1 = time.perf_counter()
            latencies.append(t1 - t0)
            next_index += per_txn
            if t1 >= deadline:
                break
        elapsed = time.perf_counter() - start
    txns = len(latencies)
    latencies.sort()
    return {
        "groups": groups,
        "entries_per_group_per_txn": per_txn,
        "entry_bytes": entry_size,
        "mode": mode,
        "txns": txns,
        "txns_s": round(txns / elapsed, 1),
        "entries_s": round(txns * groups * per_txn / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1e3, 3),
        "p99_ms": round(latencies[min(txns - 1, int(txns * 0.99))] * 1e3, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="per configuration")
    ap.add_argument("--entry-size", type=int, default=128)
    ap.add_argument("--entries", type=int, default=64, help="entries per group per txn")
    ap.add_argument("--dir", type=Path, default=None, help="where to put the data (temp dir)")
    ap.add_argument("--modes", default=",".join(MODES))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-storage-") as tmp:
        root = Path(tmp)
        probe_before = fdatasync_p50_ms(root)
        results = [
            run(root, groups, args.entries, args.entry_size, mode, args.seconds)
            for mode in args.modes.split(",")
            for groups in (1, 3)
        ]
        meta = {
            "python": platform.python_version(),
            "lmdb": __import__("lmdb").__version__,
            "dir": str(root),
            "filesystem": filesystem_of(root),
            "cpus": os.cpu_count(),
            "seconds_per_point": args.seconds,
            "fdatasync_p50_ms_before": probe_before,
            "fdatasync_p50_ms_after": fdatasync_p50_ms(root),
            "loadavg_1m": round(os.getloadavg()[0], 2),
        }
    print(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
