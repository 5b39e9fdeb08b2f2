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
    health = c.health(behind)
    assert health is not None
    had = {gr["group"]: gr["last_index"] for gr in health["groups"]}
    c.stop_node(behind)

    def compacted_past_behind() -> bool:
        """Whether some group's leader dropped entries the stopped follower still needs."""
        for g, last in had.items():
            leader = c.leader(g)
            h = c.health(leader) if leader is not None else None
            for gr in h["groups"] if h else []:
                if gr["group"] == g and gr["first_index"] > last + 1:
                    return True
        return False

    data: dict[bytes, bytes] = {}
    with Client(seeds, timeout=5.0) as kv:

        def write_more() -> bool:
            pipe = kv.pipeline()
            for i in range(len(data), len(data) + 50):
                data[f"key:{i}".encode()] = f"value:{i}".encode()
                pipe.set(f"key:{i}".encode(), f"value:{i}".encode())
            assert all(pipe.execute())
            return len(data) >= 600 and compacted_past_behind()

        c.wait_until(f"a leader to compact past what node {behind} has", write_more, timeout=120)
        kv.delete(b"key:0")
        del data[b"key:0"]

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
