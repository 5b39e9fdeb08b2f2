"""A full LMDB map: writes get a clear error, nothing acknowledged is lost, the nodes stay up
and keep serving (stale) reads; and a node refuses another cluster's data directory."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from kvcluster.client import Client
from kvcluster.errors import OutcomeUnknown, ServiceUnavailable
from kvcluster.local import LocalCluster
from kvcluster.sharding import RetryBudget

from .conftest import stale_get_all


def test_full_storage_refuses_writes_and_keeps_serving_reads(cluster_factory: Any) -> None:
    c: LocalCluster = cluster_factory(
        3, tick_ms=20, groups=1, extra_args=("--map-size-mb=1", "--snapshot-entries=100000")
    )
    c.start()
    value = b"x" * 60_000
    acked: list[bytes] = []
    with Client(",".join(c.addresses), timeout=3.0, budget=RetryBudget(max_attempts=4)) as kv:
        with pytest.raises((ServiceUnavailable, OutcomeUnknown)):
            for i in range(100):  # 6 MB into a 1 MiB map: it fills up
                key = f"big:{i}".encode()
                kv.set(key, value)
                acked.append(key)
        assert acked, "some writes should fit before the map is full"
    # Every node is still running and answers reads from its local state; each acknowledged
    # write is served by some node (the one that applied it before answering).
    views = []
    for n in c.nodes.values():
        assert n.alive()
        got = stale_get_all(n.address, acked)
        assert got is not None
        views.append(got)
    for i, key in enumerate(acked):
        assert any(v[i] == value for v in views), f"acknowledged {key!r} is not served"


def test_node_refuses_another_clusters_data_directory(cluster_factory: Any) -> None:
    c: LocalCluster = cluster_factory(3, tick_ms=20, groups=1)
    c.start()
    n = c.nodes[1]
    c.stop_node(1)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "kvcluster.server",
            "--node-id=1",
            f"--listen={n.address}",
            f"--peers={c.peers_arg()}",
            f"--data-dir={n.data_dir}",
            "--cluster-id=another",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0
    assert "another" in r.stderr and "kvcluster" in r.stderr
