"""The client API against a real 3-node cluster: redis-style results, errors at the edge."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kvcluster import AsyncClient, Client
from kvcluster.errors import InvalidArgument, WrongType
from kvcluster.local import LocalCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(3, tmp_path_factory.mktemp("api"), tick_ms=20)
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture
def kv(cluster: LocalCluster) -> Iterator[Client]:
    with Client(",".join(cluster.addresses)) as client:
        yield client


def test_readme_example(kv: Client) -> None:
    assert kv.set("user:1", "alice", ex=60) is True
    assert kv.get("user:1") == b"alice"
    assert kv.incr("visits") == 1
    assert kv.cas("user:1", "alice", "bob") is True
    assert kv.mget(["user:1", "visits"]) == [b"bob", b"1"]
    with kv.pipeline() as p:
        p.set("a", 1).set("b", 2).get("a")
        assert p.execute() == [True, True, b"1"]


def test_redis_semantics(kv: Client) -> None:
    assert kv.get("absent") is None
    assert kv.set("k", "v", nx=True) is True
    assert kv.set("k", "w", nx=True) is False
    assert kv.set("nope", "w", xx=True) is False
    assert kv.exists("k", "nope") == 1
    assert kv.ttl("k") == -1
    assert kv.expire("k", 100) is True
    assert 0 < kv.ttl("k") <= 100
    assert kv.persist("k") is True
    assert kv.ttl("k") == -1
    assert kv.ttl("nope") == -2
    assert kv.delete("k", "nope") == 1
    assert kv.incrby("n", 5) == 5
    assert kv.decr("n", 2) == 3
    assert kv.cas("c", None, "first") is True  # None: expect absent
    assert kv.cas("c", None, "again") is False
    assert kv.cas("c", "wrong", "x") is False
    assert kv.get("c") == b"first"
    assert kv.mset({"m1": "1", "m2": "2"}) is True
    assert kv.mget(["m1", "m2", "m3"]) == [b"1", b"2", None]
    assert kv.get("m1", stale=True) in (b"1", None)  # a stale read may be behind


def test_bad_input_gets_clear_errors_and_nothing_changes(kv: Client, cluster: LocalCluster) -> None:
    kv.set("text", "hello")
    with pytest.raises(WrongType):
        kv.incr("text")
    assert kv.get("text") == b"hello"
    with pytest.raises(InvalidArgument, match="key"):
        kv.set("k" * 600, "v")
    with pytest.raises(InvalidArgument, match="value"):
        kv.set("big", b"x" * (1024 * 1024 + 1))
    with pytest.raises(InvalidArgument):
        kv.set("k", object())  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        kv.set("k", "v", nx=True, xx=True)
    with pytest.raises(InvalidArgument):
        kv.expire("k", -1)
    # The cluster is still healthy and serving.
    assert kv.set("after", "ok") is True
    assert cluster.leader() is not None


def test_pipeline_can_collect_errors(kv: Client) -> None:
    kv.set("t", "text")
    p = kv.pipeline()
    p.set("p1", "x").incr("t").get("p1")
    out = p.execute(raise_on_error=False)
    assert out[0] is True and isinstance(out[1], WrongType) and out[2] == b"x"


def test_async_client(cluster: LocalCluster) -> None:
    async def main() -> list[Any]:
        async with AsyncClient(",".join(cluster.addresses)) as akv:
            await akv.set("async", "yes")
            results = await asyncio.gather(*(akv.incr("acount") for _ in range(20)))
            p = akv.pipeline()
            p.get("async").get("acount")
            return [sorted(results), await p.execute()]

    incrs, piped = asyncio.run(main())
    assert incrs == list(range(1, 21))
    assert piped == [b"yes", b"20"]


def _seed_not_leading_everything(cluster: LocalCluster) -> str:
    """A node address to seed a client with that some group's leader is not (a node that
    leads no group if there is one)."""
    with Client(",".join(cluster.addresses)) as probe:
        assert probe.refresh_slots()
        leaders = probe._cache.leaders()
    others = [a for a in cluster.addresses if a not in leaders]
    return others[0] if others else next(a for a in cluster.addresses if a != leaders[0])


def test_client_connects_ahead_to_the_group_leaders(cluster: LocalCluster) -> None:
    """After a map refresh the client's channels to the leaders are connected before any
    request needs them, so a MOVED or ASK does not pay for a new connection."""
    import grpc
    from grpc._common import CYGRPC_CONNECTIVITY_STATE_TO_CHANNEL_CONNECTIVITY as STATES

    seed = _seed_not_leading_everything(cluster)
    with Client(seed) as kv:
        assert kv.refresh_slots()
        targets = [a for a in kv._cache.leaders() if a != seed]  # the map it just learned
        assert targets
        for addr in targets:
            ch: Any = kv._channels[addr]  # no request of the test's went through it
            deadline = time.monotonic() + 15
            # The state, without asking gRPC to connect (a subscription's polling thread
            # would outlive the check and trip over the closed channel).
            while STATES[ch._channel.check_connectivity_state(False)] != (
                grpc.ChannelConnectivity.READY
            ):
                assert time.monotonic() < deadline, f"no connection to {addr} was opened ahead"
                time.sleep(0.01)  # polling a condition, with a deadline

    async def connected_ahead() -> list[str]:
        loop = asyncio.get_running_loop()
        async with AsyncClient(seed) as akv:
            assert await akv.refresh_slots()
            targets = [a for a in akv._cache.leaders() if a != seed]
            assert targets
            for addr in targets:
                ch = akv._channels[addr]  # no request has been sent on it
                deadline = loop.time() + 15
                state = ch.get_state(try_to_connect=False)
                while state != grpc.ChannelConnectivity.READY:
                    left = deadline - loop.time()
                    assert left > 0, f"no connection to {addr} was opened ahead ({state})"
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(ch.wait_for_state_change(state), left)
                    state = ch.get_state(try_to_connect=False)
            return targets

    assert asyncio.run(connected_ahead())


def test_a_closed_client_refuses_calls_and_opens_nothing(cluster: LocalCluster) -> None:
    kv = Client(",".join(cluster.addresses))
    assert kv.set("closing", "1") is True
    kv.close()
    with pytest.raises(InvalidArgument, match="closed"):
        kv.get("closing")
    assert kv.refresh_slots() is False
    assert kv._streams == {} and kv._channels == {}


def test_a_batch_above_the_stream_limit_goes_in_a_call_of_its_own(kv: Client) -> None:
    from kvcluster.client.sync import STREAM_MAX_BATCH_BYTES

    big = {f"big:{i}": "x" * 2048 for i in range(200)}  # ~400 KiB over three groups
    assert 3 * STREAM_MAX_BATCH_BYTES < 200 * 2048
    assert kv.mset(big) is True
    assert kv.mget(list(big)) == [b"x" * 2048] * 200


def test_unknown_command_and_garbage_at_the_grpc_edge(cluster: LocalCluster) -> None:
    import grpc

    from kvcluster.v1 import kv_pb2, kv_pb2_grpc

    leader = cluster.wait_for_leader()
    with grpc.insecure_channel(cluster.nodes[leader].address) as ch:
        stub = kv_pb2_grpc.KVStub(ch)
        resp = stub.Execute(
            kv_pb2.BatchRequest(
                requests=[
                    kv_pb2.Request(op=99, key=b"k"),  # type: ignore[arg-type]
                    kv_pb2.Request(op=kv_pb2.OP_UNSPECIFIED, key=b"k"),
                    kv_pb2.Request(op=kv_pb2.SET, key=b"ok", value=b"1"),
                ]
            ),
            timeout=10,
        )
        statuses = [r.status for r in resp.responses]
        assert statuses[:2] == [kv_pb2.INVALID, kv_pb2.INVALID]
        assert "op" in resp.responses[0].error
        assert statuses[2] == kv_pb2.OK  # the good request in the same batch still ran
        # Bytes that are not a protobuf message at all: a clean gRPC error, node stays up.
        raw = ch.unary_unary("/kvcluster.v1.KV/Execute")
        with pytest.raises(grpc.RpcError):
            raw(b"\xff\xff\xff\xff garbage", timeout=10)
    assert cluster.leader() is not None


def test_an_address_that_is_not_a_node(cluster: LocalCluster) -> None:
    import socket
    import subprocess
    import sys

    from kvcluster.errors import RetryBudgetExhausted
    from kvcluster.sharding import RetryBudget

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = f"127.0.0.1:{s.getsockname()[1]}"
    s.close()  # nothing listens there now
    with (
        Client(dead, timeout=1.0, budget=RetryBudget(max_attempts=3)) as kv,
        pytest.raises(RetryBudgetExhausted),
    ):
        kv.get("k")  # a read has no effect, so the outcome is known: it did not happen
    r = subprocess.run(
        [sys.executable, "-m", "kvcluster.cli", "--cluster", dead, "--timeout", "1", "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 4 and "no node answered" in r.stderr
    # The real cluster did not notice.
    assert cluster.leader() is not None
