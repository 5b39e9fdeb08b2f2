"""A sharded cluster: 3 nodes, 3 shard groups plus the meta group.

Keys land on every group; requests for a slot this node's groups do not own get MOVED; a
follower redirects to its leader; the client keeps working while the leader of each group
in turn, and of the meta group, is SIGKILLed and restarted; no acknowledged write is lost.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import grpc

from kvcluster.client import Client
from kvcluster.local import LocalCluster
from kvcluster.sharding import key_slot
from kvcluster.v1 import admin_pb2, admin_pb2_grpc, kv_pb2, kv_pb2_grpc

from .conftest import stale_get_all
from .test_crash_recovery import Writer


def kvctl(c: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kvcluster.cli", "--cluster", ",".join(c.addresses), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def slot_map(c: LocalCluster) -> dict[str, Any]:
    with grpc.insecure_channel(c.addresses[0]) as ch:
        r = admin_pb2_grpc.ClusterInfoStub(ch).ClusterSlots(
            admin_pb2.ClusterSlotsRequest(), timeout=10
        )
    return dict(json.loads(r.slot_map))


def test_keys_spread_and_leaders_of_every_group_and_meta_can_die(cluster_factory: Any) -> None:
    c: LocalCluster = cluster_factory(3, tick_ms=20, groups=3, replicas=3)
    c.start()
    seeds = ",".join(c.addresses)
    smap = slot_map(c)
    assert [r[2] for r in smap["slots"]] == [1, 2, 3] and smap["epoch"] >= 1

    with Client(seeds) as kv:
        keys = [f"key:{i}" for i in range(300)]
        assert kv.mset({k: k.upper() for k in keys})
        owners = {g for k in keys for (s, e, g) in smap["slots"] if s <= key_slot(k) <= e}
        assert owners == {1, 2, 3}, "keys should land on every group"
        assert kv.mget(keys) == [k.upper().encode() for k in keys]

    writer = Writer(seeds, "w")
    writer.start()
    try:
        for group in (1, 2, 3, 0):  # each shard group's leader, then the meta leader's
            writer.wait_progress(5)
            leader = c.wait_for_leader(group=group, timeout=60)
            c.kill_node(leader)
            c.start_node(leader)
            c.wait_healthy(timeout=60)
        writer.wait_progress(5)
    finally:
        writer.stop.set()
        writer.join(timeout=60)
    assert writer.failed == 0
    with Client(seeds) as kv:
        acked = sorted(writer.acked)
        assert kv.mget(acked) == [writer.acked[k] for k in acked]

    everything = sorted(writer.acked) + [k.encode() for k in keys]

    def agree() -> bool:
        views = [stale_get_all(n.address, everything) for n in c.nodes.values()]
        return views[0] is not None and all(v == views[0] for v in views)

    c.wait_until("replicas to agree", agree, timeout=60)

    # kvctl sees the same cluster.
    out = kvctl(c, "--json", "slots")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["slots"] == smap["slots"]
    out = kvctl(c, "status")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("LEADER") == 4  # three shard groups and the meta group


def test_moved_and_leader_redirects(cluster_factory: Any) -> None:
    # Two replicas per group: node 3 holds no replica of group 1, so it answers MOVED.
    c: LocalCluster = cluster_factory(3, tick_ms=20, groups=3, replicas=2)
    c.start()
    smap = slot_map(c)
    groups = {g["id"]: g for g in smap["groups"]}
    key = next(
        f"k{i}"
        for i in range(1000)
        if smap["slots"][0][0] <= key_slot(f"k{i}") <= smap["slots"][0][1]
    )
    slot = key_slot(key)
    outsider = next(n for n in c.nodes.values() if n.address not in groups[1]["replicas"])
    with grpc.insecure_channel(outsider.address) as ch:
        r = (
            kv_pb2_grpc.KVStub(ch)
            .Execute(
                kv_pb2.BatchRequest(requests=[kv_pb2.Request(op=kv_pb2.GET, key=key.encode())]),
                timeout=10,
            )
            .responses[0]
        )
    assert r.status == kv_pb2.MOVED
    assert (r.slot, r.epoch) == (slot, smap["epoch"])
    assert r.address in groups[1]["replicas"]

    leader = c.wait_for_leader(group=1)
    follower = next(
        n for i, n in c.nodes.items() if i != leader and n.address in groups[1]["replicas"]
    )
    with grpc.insecure_channel(follower.address) as ch:
        r = (
            kv_pb2_grpc.KVStub(ch)
            .Execute(
                kv_pb2.BatchRequest(
                    requests=[kv_pb2.Request(op=kv_pb2.SET, key=key.encode(), value=b"v")]
                ),
                timeout=10,
            )
            .responses[0]
        )
    assert r.status == kv_pb2.NOT_LEADER
    assert r.address == c.nodes[leader].address

    # The client, seeded only with the outsider, follows MOVED and the leader redirect.
    with Client(outsider.address) as kv:
        assert kv.set(key, "via-redirects") is True
        assert kv.get(key) == b"via-redirects"

    # The leader that applied the write timed its transactions and the apply within them.
    for name in ("kvcluster_persist_seconds_count", "kvcluster_apply_seconds_count"):
        count = c.metric(leader, name)
        assert count is not None and count > 0, f"{name} not observed"


def test_kvctl_cluster_create_is_idempotent(cluster_factory: Any) -> None:
    c: LocalCluster = cluster_factory(3, tick_ms=20, groups=0)  # no automatic layout
    for i in c.nodes:
        c.start_node(i)
    c.wait_until("the meta group to elect", lambda: c.leader(group=0) is not None, 60)
    first = kvctl(c, "--json", "cluster", "create", "--groups", "3", "--replicas", "3")
    assert first.returncode == 0, first.stdout + first.stderr
    again = kvctl(c, "--json", "cluster", "create", "--groups", "3", "--replicas", "3")
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["epoch"] == json.loads(first.stdout)["epoch"]
    other = kvctl(c, "cluster", "create", "--groups", "2", "--replicas", "3")
    assert other.returncode == 1 and "different layout" in other.stderr
    c.wait_healthy(timeout=60)
    with Client(",".join(c.addresses)) as kv:
        assert kv.set("after-create", "ok") is True
