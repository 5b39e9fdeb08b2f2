"""Log compaction in a running group: a follower that was down while the leader compacted
catches up by snapshot; the whole cluster restarts from compacted logs plus snapshots."""

from __future__ import annotations

from typing import Any

from kvcluster.client import Client
from kvcluster.local import LocalCluster

from .conftest import stale_get_all


def test_far_behind_follower_catches_up_by_snapshot_and_cluster_restarts(
    cluster_factory: Any,
) -> None:
    c: LocalCluster = cluster_factory(3, tick_ms=20, extra_args=("--snapshot-entries=50",))
    c.start()
    seeds = ",".join(c.addresses)
    leader = c.wait_for_leader()
    behind = next(i for i in c.nodes if i != leader)
    c.stop_node(behind)

    data = {f"key:{i}".encode(): f"value:{i}".encode() for i in range(600)}
    with Client(seeds, timeout=5.0) as kv:
        items = list(data.items())
        for i in range(0, len(items), 50):
            pipe = kv.pipeline()
            for k, v in items[i : i + 50]:
                pipe.set(k, v)
            assert all(pipe.execute())
        kv.delete(b"key:0")
        del data[b"key:0"]

    # The leader compacted far past what the stopped follower has.
    def compacted() -> bool:
        return "log compacted" in c.nodes[leader].log_path.read_text()

    c.wait_until("the leader to compact its log", compacted)
    c.start_node(behind)
    keys = [*sorted(data), b"key:0"]
    expected = [data.get(k) for k in keys]
    c.wait_until(
        f"node {behind} to catch up",
        lambda: stale_get_all(c.nodes[behind].address, keys) == expected,
        timeout=60,
    )
    # It got there by a snapshot, not by replaying the (compacted) log.
    assert "installed snapshot" in c.nodes[behind].log_path.read_text()

    # Restart every node from disk (compacted log + snapshot) and read everything back.
    for i in c.nodes:
        c.stop_node(i)
    for i in c.nodes:
        c.start_node(i)
    c.wait_for_leader(timeout=60)
    with Client(seeds, timeout=5.0) as kv:
        assert kv.mget(keys) == expected
