"""kvctl reshard / rebalance / group add|remove / status, as an operator runs them.

Includes Ctrl-C (SIGINT) in the middle of a reshard: kvctl exits 5, nothing is left frozen,
and ``--resume`` finishes or ``--abort`` rolls back.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from typing import Any

from kvcluster.client import Client
from kvcluster.local import LocalCluster
from kvcluster.reshard import LeaderCalls
from kvcluster.sharding.migration import Phase


def kvctl(c: LocalCluster, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kvcluster.cli", "--cluster", ",".join(c.addresses), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def last_json(out: str) -> dict[str, Any]:
    return dict(json.loads(out.strip().splitlines()[-1]))


def owners_of(calls: LeaderCalls) -> dict[int, int]:
    meta = calls.meta_state()
    return {s: g for a, b, g in meta.owners for s in range(a, b + 1)}


def test_reshard_commands_end_to_end(cluster_factory: Any) -> None:
    c: LocalCluster = cluster_factory(3, tick_ms=20, groups=3, replicas=3)
    c.start()
    with Client(",".join(c.addresses)) as kv, LeaderCalls(c.addresses) as calls:
        data = {f"key:{i}": f"value:{i}" for i in range(3000)}
        kv.mset(data)

        dry = kvctl(c, "--json", "reshard", "--slots", "0-99", "--to", "2", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        plan = last_json(dry.stdout)
        assert plan["dry_run"] and plan["slots"] == 100 and plan["keys"] > 0
        assert {m["from"] for m in plan["moves"]} == {1} and plan["estimate_s"] > 0
        assert owners_of(calls)[0] == 1, "a dry run changes nothing"

        r = kvctl(c, "reshard", "--slots", "0-99", "--to", "2")
        assert r.returncode == 0, r.stderr
        assert last_json(r.stdout)["slots_done"] == 100
        assert all(owners_of(calls)[s] == 2 for s in range(100))

        r = kvctl(c, "reshard", "--count", "50", "--from", "2", "--to", "3")
        assert r.returncode == 0, r.stderr
        counts = _counts(owners_of(calls))
        assert counts[3] == 5461 + 50

        r = kvctl(c, "--json", "group", "add", "4", "--replicas", "1,2,3")
        assert r.returncode == 0 and last_json(r.stdout)["group"] == 4, r.stderr
        r = kvctl(c, "rebalance")
        assert r.returncode == 0, r.stderr
        counts = _counts(owners_of(calls))
        assert max(counts.values()) - min(counts.values()) <= 1 and counts[4] >= 4096

        st = kvctl(c, "--json", "status")
        assert st.returncode == 0 and last_json(st.stdout)["migrations"] == []

        r = kvctl(c, "group", "remove", "4")
        assert r.returncode == 0, r.stderr
        assert 4 not in calls.meta_state().groups and 4 not in owners_of(calls).values()
        assert kv.mget(list(data)) == [v.encode() for v in data.values()]

        bad = kvctl(c, "reshard", "--count", "5", "--from", "1", "--to", "9")
        assert bad.returncode == 2 and "unknown target" in bad.stderr


def _counts(owners: dict[int, int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for g in owners.values():
        out[g] = out.get(g, 0) + 1
    return out


def _interrupted_reshard(c: LocalCluster, calls: LeaderCalls, args: list[str]) -> None:
    """Start a reshard, SIGINT it once some slots have moved; kvctl exits 5 and nothing is
    left frozen."""
    start = owners_of(calls)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kvcluster.cli", "--cluster", ",".join(c.addresses), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while owners_of(calls) == start:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no slot moved"
            time.sleep(0.05)  # polling the cluster for progress, not synchronising
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 5, (out, err)
    assert "--resume" in err
    left = calls.meta_state().migrations
    assert left and all(m.phase in (Phase.PENDING, Phase.COPYING) for m in left), left


def test_ctrl_c_then_resume_and_ctrl_c_then_abort(cluster_factory: Any) -> None:
    c: LocalCluster = cluster_factory(3, tick_ms=20, groups=3, replicas=3)
    c.start()
    with LeaderCalls(c.addresses) as calls:
        slow = ["--batch", "16", "--parallel", "1"]
        initial = _counts(owners_of(calls))
        _interrupted_reshard(
            c, calls, ["reshard", "--count", "2000", "--from", "1", "--to", "2", *slow]
        )
        st = kvctl(c, "status")
        assert "migrations in progress" in st.stdout
        r = kvctl(c, "reshard", "--resume")
        assert r.returncode == 0, r.stderr
        assert calls.meta_state().migrations == ()
        assert _counts(owners_of(calls))[2] == initial[2] + 2000

        before = owners_of(calls)
        _interrupted_reshard(
            c, calls, ["reshard", "--count", "2000", "--from", "2", "--to", "3", *slow]
        )
        moved = {s for s, g in owners_of(calls).items() if before[s] != g}
        r = kvctl(c, "reshard", "--abort")
        assert r.returncode == 0, r.stderr
        assert calls.meta_state().migrations == ()
        after = owners_of(calls)
        changed = {s for s in after if after[s] != before[s]}
        assert changed == moved, "abort rolls back exactly what had not flipped"
