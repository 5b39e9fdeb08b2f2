"""``docker compose up`` runs a working 3-node cluster (docker-compose.yml, Dockerfile).

From the host, through the published ports and the client's address map: write and read
100 keys; kill a group leader's container and keep writing; start it again and wait until all
three replicas hold the same data (STALE reads from each node); ``kvctl status`` answers.
Skipped, saying why, where no Docker engine is usable (see conftest.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from kvcluster.client import Client
from kvcluster.testing.probes import stale_get_all

from .conftest import NODES, ROOT, ComposeCluster, wait_until

# A cold run builds the base image (debootstrap) and the node image first: minutes, not
# the 300 s the rest of the suite gets.
pytestmark = pytest.mark.timeout(900)


def _keys(lo: int, hi: int) -> dict[bytes, bytes]:
    return {f"compose:{i}".encode(): f"value-{i}".encode() for i in range(lo, hi)}


def _write(kv: Client, data: dict[bytes, bytes]) -> None:
    for k, v in data.items():
        assert kv.set(k, v) is True


def _read_back(kv: Client, data: dict[bytes, bytes]) -> None:
    keys = list(data)
    assert kv.mget(keys) == [data[k] for k in keys]


def _replicas_agree(cluster: ComposeCluster, data: dict[bytes, bytes]) -> bool:
    keys, want = list(data), list(data.values())
    return all(stale_get_all(cluster.grpc(n), keys) == want for n in NODES)


def _kvctl(cluster: ComposeCluster, *args: str) -> subprocess.CompletedProcess[str]:
    amap = ",".join(f"{adv}={dial}" for adv, dial in cluster.address_map.items())
    # `kvctl`, run from this tree (cwd) with the interpreter running the tests.
    cmd = [sys.executable, "-m", "kvcluster.cli", "--cluster", cluster.grpc(1)]
    cmd += ["--address-map", amap, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_compose_cluster_survives_a_killed_node(compose_cluster: ComposeCluster) -> None:
    cluster = compose_cluster
    took = wait_until("all three containers healthy", cluster.healthy, timeout=180)
    print(f"[compose] healthy {took:.1f}s after `up`")

    written = _keys(0, 100)
    with Client(cluster.seeds, address_map=cluster.address_map) as kv:
        _write(kv, written)
        _read_back(kv, written)

        victim = cluster.leader()
        assert victim is not None, "no node reports a leader although all are healthy"
        t = time.monotonic()
        subprocess.run(["docker", "kill", cluster.container(victim)], check=True, timeout=60)
        wait_until(f"node{victim} stopped", lambda: cluster.state(victim)[0] != "running", 30)

        more = _keys(100, 200)
        _write(kv, more)  # fails over to a new leader within the client's retry budget
        written |= more
        _read_back(kv, written)
        print(
            f"[compose] killed node{victim}; 100 writes on two nodes in {time.monotonic() - t:.1f}s"
        )
        assert cluster.state(victim)[0] != "running", "the killed node came back by itself"

    subprocess.run(["docker", "start", cluster.container(victim)], check=True, timeout=60)
    took = wait_until(f"node{victim} healthy again", lambda: cluster.healthy(victim), 120)
    took += wait_until("all replicas agree", lambda: _replicas_agree(cluster, written), 60)
    print(f"[compose] node{victim} restarted and caught up in {took:.1f}s")

    status = _kvctl(cluster, "--json", "status")
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)["nodes"]
    assert sorted({r["node"] for r in rows}) == list(NODES)  # a row per node and group
    assert all(r["up"] for r in rows), rows
    for group in {r["group"] for r in rows}:
        roles = [r["role"] for r in rows if r["group"] == group]
        assert roles.count("LEADER") == 1, rows
    human = _kvctl(cluster, "status")
    assert human.returncode == 0, human.stderr
    print(human.stdout)
