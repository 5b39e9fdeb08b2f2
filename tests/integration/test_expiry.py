"""Active expiry on a live cluster: the leaders delete expired keys through their logs, and
leave every other key alone."""

from __future__ import annotations

from typing import Any

from kvcluster.client import Client
from kvcluster.local import LocalCluster


def deleted_by_expiry(c: LocalCluster) -> int:
    """Expired keys deleted, summed over the live nodes (each counts what it proposed)."""
    counts = (c.metric(i, "kvcluster_expired_keys_deleted_total") for i in c.nodes)
    return int(sum(v for v in counts if v is not None))


def test_expired_keys_are_deleted_and_others_kept(cluster_factory: Any) -> None:
    c: LocalCluster = cluster_factory(3, tick_ms=20, extra_args=("--expire-keys-every=0.2",))
    c.start()
    c.wait_for_leader()
    with Client(",".join(c.addresses), timeout=5.0) as kv:
        short = [f"short:{i}".encode() for i in range(300)]
        for i in range(0, 300, 50):
            pipe = kv.pipeline()
            for k in short[i : i + 50]:
                pipe.set(k, b"x", px=300)
            assert all(pipe.execute())
        kept = {f"kept:{i}".encode(): f"v{i}".encode() for i in range(50)}
        kv.mset(kept)
        long = {f"long:{i}".encode(): b"y" for i in range(50)}
        for k, v in long.items():
            assert kv.set(k, v, ex=3600)

        c.wait_until("300 expired keys deleted", lambda: deleted_by_expiry(c) >= 300, timeout=60)
        assert deleted_by_expiry(c) == 300  # nothing else was deleted
        assert kv.mget(short) == [None] * 300
        assert kv.mget(list(kept)) == list(kept.values())
        assert kv.mget(list(long)) == list(long.values())
        assert all(kv.ttl(k) > 3000 for k in long)
