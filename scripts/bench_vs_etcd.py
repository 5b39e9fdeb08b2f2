#!/usr/bin/env python3
"""kvcluster beside etcd, measured in the same run on this machine.

Runs the etcd anchor of ../shared/bench (a copy, in a temp dir: 3 members, Python grpc.aio
client, closed-loop callers, 16 B keys, 64 B values, 10k keys) and then kvctl bench with the
same shape (own 3-node cluster, fsync on), at C = 1, 16, 64, for writes and linearizable
reads. Prints both tables and the ratios; the last line is JSON.

    python scripts/bench_vs_etcd.py [--seconds 10] [--conc 1,16,64] [--groups 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT.parent / "shared" / "bench"


def run_etcd(seconds: int, conc: str) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        kit = Path(tmp) / "bench"
        shutil.copytree(KIT, kit, ignore=shutil.ignore_patterns("results"))
        (kit / "results").mkdir()
        env = dict(
            os.environ,
            ANCHORS_ONLY="etcd",
            ANCHORS_SECONDS=str(seconds),
            ANCHORS_CONC=conc,
            ANCHORS_ETCD_CHECK_LOAD="none",
        )
        subprocess.run(
            ["bash", str(kit / "run_anchors.sh")],
            env=env,
            check=False,
            stdout=sys.stderr,
            timeout=1800,
        )
        out = sorted((kit / "results").glob("anchors-*.json"))
        if not out:
            raise SystemExit("the etcd anchor produced no result")
        phases = json.loads(out[-1].read_text())["etcd"]["phases"]
    result: dict[str, dict[str, float]] = {}
    for name, p in phases.items():
        op, _, c = name.partition("/C=")
        kind = {"put": "write", "get": "read"}.get(op)
        if kind:  # "get" is the linearizable get in the kit
            result[f"{kind}/{c}"] = {k: p[k] for k in ("ops_s", "p50_ms", "p99_ms")}
    return result


def run_ours(seconds: int, conc: str, groups: int) -> dict[str, dict[str, float]]:
    result: dict[str, dict[str, float]] = {}
    kvctl = [sys.executable, "-m", "kvcluster.cli", "--json", "bench"]
    for workload in ("write", "read"):
        for c in conc.split(","):
            r = subprocess.run(
                [
                    *kvctl,
                    "--workload",
                    workload,
                    "-c",
                    c,
                    "--seconds",
                    str(seconds),
                    "--groups",
                    str(groups),
                ],
                capture_output=True,
                text=True,
                timeout=600,
                check=True,
            )
            j = json.loads(r.stdout.strip().splitlines()[-1])
            result[f"{workload}/{c}"] = {k: j[k] for k in ("ops_s", "p50_ms", "p99_ms")}
            print(f"kvcluster {workload} C={c}: {j['ops_s']:,.0f} ops/s", file=sys.stderr)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--conc", default="1,16,64")
    ap.add_argument("--groups", type=int, default=1, help="shard groups of our cluster")
    args = ap.parse_args()
    etcd = run_etcd(args.seconds, args.conc)
    ours = run_ours(args.seconds, args.conc, args.groups)
    print(
        f"{'op':<8}{'C':>4}  {'etcd ops/s':>11} {'p50':>7} {'p99':>7}   "
        f"{'kvcluster':>10} {'p50':>7} {'p99':>7}   {'ratio':>6}"
    )
    for key in ours:
        e, o = etcd.get(key), ours[key]
        op, c = key.split("/")
        if e is None:
            continue
        print(
            f"{op:<8}{c:>4}  {e['ops_s']:>11,.0f} {e['p50_ms']:>7.1f} {e['p99_ms']:>7.1f}   "
            f"{o['ops_s']:>10,.0f} {o['p50_ms']:>7.1f} {o['p99_ms']:>7.1f}   "
            f"{o['ops_s'] / e['ops_s']:>6.2f}"
        )
    print(json.dumps({"etcd": etcd, "kvcluster": ours, "groups": args.groups}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
