"""GrpcTransport on loopback: batching, order, reconnects, refusals, drops, clean shutdown.

Every test runs its own event loop (``asyncio.run``) under a deadline, listens on 127.0.0.1
with an ephemeral port, and waits for conditions (queues filled by the callbacks), never for
wall-clock time.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import grpc
import grpc.aio
import pytest

from kvcluster.errors import InvalidArgument
from kvcluster.raft.types import (
    ConfState,
    Entry,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)
from kvcluster.transport import (
    SERVER_OPTIONS,
    BackoffPolicy,
    GrpcTransport,
    GrpcTransportConfig,
    TransportError,
    encode_message,
)
from kvcluster.transport.servicer import ACK_EVERY
from kvcluster.v1 import raft_pb2, raft_pb2_grpc

DEADLINE = 30.0  # generous: only a broken test ever waits this long
FAST = GrpcTransportConfig(backoff=BackoffPolicy(initial=0.01, maximum=0.05))

Batch = tuple[int, list[tuple[int, Message]]]


def run(test: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        await asyncio.wait_for(test(), DEADLINE)
        # No transport task may outlive stop() (the servers' own tasks are gRPC's business).
        left = [t for t in asyncio.all_tasks() if t.get_name().startswith("raft-peer")]
        assert not left, f"transport tasks left running: {left}"

    asyncio.run(main())


def hb(to: int, frm: int, seq: int, term: int = 1) -> Message:
    """A small message whose ``commit`` numbers it, so tests can check order."""
    return Message(MessageType.HEARTBEAT, to=to, from_=frm, term=term, commit=seq)


class Node:
    """One transport plus (optionally) the gRPC server that hosts its servicer."""

    def __init__(
        self, node_id: int, cluster_id: str = "test", config: GrpcTransportConfig = FAST
    ) -> None:
        self.node_id = node_id
        self.inbox: asyncio.Queue[Batch] = asyncio.Queue()
        self.unreachable: asyncio.Queue[int] = asyncio.Queue()
        self.transport = GrpcTransport(
            node_id,
            cluster_id,
            lambda frm, msgs: self.inbox.put_nowait((frm, msgs)),
            self.unreachable.put_nowait,
            config=config,
            rng=random.Random(node_id),
        )
        self.server: grpc.aio.Server | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def serve(self, port: int = 0) -> None:
        server = grpc.aio.server(options=SERVER_OPTIONS)
        raft_pb2_grpc.add_RaftPeerServicer_to_server(self.transport.servicer(), server)
        self.port = server.add_insecure_port(f"127.0.0.1:{port}")
        assert self.port, f"could not bind 127.0.0.1:{port}"
        await server.start()
        self.server = server

    async def stop_server(self) -> None:
        if self.server is not None:
            await self.server.stop(None)
            self.server = None

    async def close(self) -> None:
        await self.transport.stop()
        await self.stop_server()

    async def next_batch(self) -> Batch:
        return await self.inbox.get()

    async def receive(self, n: int) -> list[tuple[int, int, Message]]:
        """The next ``n`` messages, as (from_node, group_id, message), across batches."""
        out: list[tuple[int, int, Message]] = []
        while len(out) < n:
            frm, msgs = await self.inbox.get()
            out.extend((frm, g, m) for g, m in msgs)
        assert len(out) == n, f"received {len(out)} messages, expected {n}"
        return out


@asynccontextmanager
async def cluster(*ids: int, serve: bool = True, start: bool = True) -> AsyncIterator[list[Node]]:
    """Nodes that know each other's addresses (full mesh)."""
    nodes = [Node(i) for i in ids]
    try:
        if serve:
            for n in nodes:
                await n.serve()
            for n in nodes:
                for p in nodes:
                    if p is not n:
                        n.transport.set_peer(p.node_id, p.address)
        if start:
            for n in nodes:
                await n.transport.start()
        yield nodes
    finally:
        for n in nodes:
            await n.close()


async def raw_stream(
    address: str, batches: list[raft_pb2.RaftBatch]
) -> tuple[list[int], grpc.StatusCode, str]:
    """Write ``batches`` on a hand-made stream, half-close it, and return the acks read
    and the final status."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = raft_pb2_grpc.RaftPeerStub(channel).Stream()
        acks: list[int] = []
        try:
            for b in batches:
                await call.write(b)
            await call.done_writing()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            pass  # refused mid-way: the status below says why
        try:
            while (ack := await call.read()) is not grpc.aio.EOF:
                acks.append(ack.batches)
        except grpc.aio.AioRpcError:
            pass
        return acks, await call.code(), await call.details() or ""


def batch(
    to: int, frm: int = 9, cluster_id: str = "test", payloads: list[bytes] | None = None
) -> raft_pb2.RaftBatch:
    b = raft_pb2.RaftBatch(from_node=frm, to_node=to, cluster_id=cluster_id)
    for i, p in enumerate(payloads or [encode_message(hb(to, frm, 0))]):
        b.messages.add(group_id=i, payload=p)
    return b


# -- batching and order -------------------------------------------------------------------


def test_messages_of_one_turn_travel_as_one_batch_per_peer() -> None:
    async def test() -> None:
        async with cluster(1, 2, 3) as (a, b, c):
            for seq in range(60):  # one loop turn: no await in between
                a.transport.send(2, seq % 6, hb(2, 1, seq))
            for seq in range(10):
                a.transport.send(3, 100 + seq, hb(3, 1, seq))

            frm, msgs = await b.next_batch()
            assert frm == 1
            assert [m.commit for _, m in msgs] == list(range(60))
            assert [g for g, _ in msgs] == [seq % 6 for seq in range(60)]
            frm, msgs = await c.next_batch()
            assert (frm, [g for g, _ in msgs]) == (1, list(range(100, 110)))
            assert b.inbox.empty() and c.inbox.empty()

            m = a.transport.metrics
            assert (m.batches_sent, m.messages_sent) == (2, 70)
            assert b.transport.metrics.batches_received == 1
            hist = dict(m.batch_size_histogram())
            assert hist[8.0] == 0 and hist[16.0] == 1 and hist[64.0] == 2

    run(test)


def test_order_is_kept_per_peer_across_turns_and_in_both_directions() -> None:
    async def test() -> None:
        async with cluster(1, 2) as (a, b):
            for seq in range(300):
                a.transport.send(2, seq % 3, hb(2, 1, seq))
                b.transport.send(1, 7, hb(1, 2, seq))
                if seq % 7 == 0:
                    await asyncio.sleep(0)  # end the loop turn: a new batch begins
            got_b = await b.receive(300)
            got_a = await a.receive(300)
            assert [m.commit for _, _, m in got_b] == list(range(300))
            assert [m.commit for _, _, m in got_a] == list(range(300))
            assert {frm for frm, _, _ in got_b} == {1}
            assert a.transport.metrics.batches_sent > 1

    run(test)


def test_large_turns_are_cut_into_batches_and_snapshots_travel_inline() -> None:
    async def test() -> None:
        config = GrpcTransportConfig(backoff=FAST.backoff, max_batch_bytes=64 * 1024)
        a, b = Node(1, config=config), Node(2)
        try:
            await b.serve()
            a.transport.set_peer(2, b.address)
            await a.transport.start()
            entry = Entry(3, 1, data=b"e" * 1000)
            for seq in range(200):  # ~200 KB in one turn -> several batches
                a.transport.send(
                    2, 1, Message(MessageType.APP, 2, 1, 3, index=seq, entries=[entry])
                )
            snap = Snapshot(SnapshotMetadata(500, 3, ConfState((1, 2, 3))), b"s" * (3 << 20))
            a.transport.send(2, 1, Message(MessageType.SNAP, 2, 1, 3, snapshot=snap))
            got = await b.receive(201)
            assert [m.index for _, _, m in got[:-1]] == list(range(200))
            assert got[-1][2].snapshot == snap
            assert a.transport.metrics.batches_sent >= 4
        finally:
            await a.close()
            await b.close()

    run(test)


# -- failures -----------------------------------------------------------------------------


def test_reconnects_after_the_peer_restarts_on_the_same_port() -> None:
    async def test() -> None:
        async with cluster(1, 2) as (a, b):
            a.transport.send(2, 1, hb(2, 1, 0))
            assert [m.commit for _, _, m in await b.receive(1)] == [0]
            port = b.port

            await b.stop_server()
            assert await a.unreachable.get() == 2  # the stream broke
            a.transport.send(2, 1, hb(2, 1, 1))  # queued while the peer is down
            assert await a.unreachable.get() == 2  # ... and reconnecting fails

            await b.serve(port)
            a.transport.send(2, 1, hb(2, 1, 2))
            got = await b.receive(2)
            assert [m.commit for _, _, m in got] == [1, 2]
            m = a.transport.metrics
            assert m.reconnects >= 2
            # Rate limit: one report per failed attempt, never more.
            assert m.unreachable_reports <= m.reconnects
            status = a.transport.peer_status()[0]
            assert (status.node_id, status.address) == (2, b.address)

    run(test)


def test_unreachable_is_reported_once_per_attempt_for_a_peer_that_never_listens() -> None:
    async def test() -> None:
        async with cluster(1, 2) as (a, b):
            dead = Node(3)
            await dead.serve()
            address = dead.address
            await dead.close()  # nothing listens there any more
            a.transport.set_peer(3, address)
            for _ in range(3):
                assert await a.unreachable.get() == 3
                a.transport.send(3, 1, hb(3, 1, 0))  # sending does not add reports
            m = a.transport.metrics
            assert m.unreachable_reports <= m.reconnects + 1
            [s2, s3] = a.transport.peer_status()
            assert s3.failed_attempts >= 3 and not s3.connected
            # The healthy peer is unaffected.
            a.transport.send(2, 1, hb(2, 1, 5))
            assert [x.commit for _, _, x in await b.receive(1)] == [5]
            assert s2.node_id == 2

    run(test)


def test_a_node_of_another_cluster_is_refused() -> None:
    async def test() -> None:
        async with cluster(2) as (b,):
            stranger = Node(1, cluster_id="other")
            try:
                stranger.transport.set_peer(2, b.address)
                await stranger.transport.start()
                stranger.transport.send(2, 1, hb(2, 1, 0))
                assert await stranger.unreachable.get() == 2
                assert b.transport.metrics.refused_streams >= 1
                assert b.inbox.empty()
                assert b.transport.metrics.messages_received == 0
            finally:
                await stranger.close()

            acks, code, details = await raw_stream(b.address, [batch(2, cluster_id="other")])
            assert (acks, code) == ([], grpc.StatusCode.FAILED_PRECONDITION)
            assert "cluster id mismatch" in details and "'other'" in details

    run(test)


@pytest.mark.parametrize(("to", "frm", "expect"), [(5, 9, "node id mismatch"), (2, 0, "no sender")])
def test_a_batch_for_another_node_or_from_nobody_is_refused(to: int, frm: int, expect: str) -> None:
    async def test() -> None:
        async with cluster(2) as (b,):
            good = batch(2)
            acks, code, details = await raw_stream(b.address, [good, batch(to, frm=frm), good])
            assert acks == [1]
            assert code == grpc.StatusCode.FAILED_PRECONDITION
            assert expect in details
            assert b.transport.metrics.refused_streams == 1
            assert b.transport.metrics.batches_received == 1

    run(test)


def test_malformed_payloads_are_skipped_and_the_stream_survives() -> None:
    async def test() -> None:
        async with cluster(2) as (b,):
            good = encode_message(hb(2, 9, 42))
            bad = [b"\xc1", encode_message(hb(2, 9, 1))[:-1], b""]
            acks, code, _ = await raw_stream(
                b.address, [batch(2, payloads=[*bad, good]), batch(2, payloads=bad)]
            )
            assert (acks, code) == ([1], grpc.StatusCode.OK)  # acks are sparse (ACK_EVERY)
            frm, msgs = await b.next_batch()
            assert frm == 9 and [(g, m.commit) for g, m in msgs] == [(3, 42)]
            assert b.inbox.empty()  # the all-bad batch delivers nothing
            m = b.transport.metrics
            assert (m.malformed_messages, m.batches_received, m.messages_received) == (6, 2, 1)

    run(test)


def test_acks_follow_the_first_batch_and_every_ack_every_th() -> None:
    async def test() -> None:
        async with cluster(2) as (b,):
            acks, code, _ = await raw_stream(b.address, [batch(2)] * (2 * ACK_EVERY + 1))
            assert (acks, code) == ([1, ACK_EVERY, 2 * ACK_EVERY], grpc.StatusCode.OK)
            assert b.transport.metrics.messages_received == 2 * ACK_EVERY + 1

    run(test)


def test_an_exception_in_on_messages_is_counted_and_the_stream_survives() -> None:
    async def test() -> None:
        async with cluster(1, 2) as (a, b):
            calls = 0

            def flaky(frm: int, msgs: list[tuple[int, Message]]) -> None:
                nonlocal calls
                calls += 1
                if calls == 1:
                    raise RuntimeError("runtime bug")
                b.inbox.put_nowait((frm, msgs))

            b.transport.servicer()._on_messages = flaky
            a.transport.send(2, 1, hb(2, 1, 0))
            a.transport.flush()
            a.transport.send(2, 1, hb(2, 1, 1))
            assert [m.commit for _, _, m in await b.receive(1)] == [1]
            assert b.transport.metrics.callback_errors == 1

    run(test)


# -- queue bounds, peers, lifecycle -------------------------------------------------------


def test_the_oldest_batches_are_dropped_when_the_queue_is_full() -> None:
    async def test() -> None:
        config = GrpcTransportConfig(backoff=FAST.backoff, max_queued_batches=2)
        a, b = Node(1, config=config), Node(2)
        try:
            await b.serve()
            a.transport.set_peer(2, b.address)
            for turn in range(5):  # not started: batches pile up in the queue
                a.transport.send(2, 1, hb(2, 1, 2 * turn))
                a.transport.send(2, 1, hb(2, 1, 2 * turn + 1))
                a.transport.flush()
            m = a.transport.metrics
            assert (m.drops, m.batches_dropped) == (6, 3)
            await a.transport.start()
            got = await b.receive(4)
            assert [x.commit for _, _, x in got] == [6, 7, 8, 9]
        finally:
            await a.close()
            await b.close()

    run(test)


def test_a_peer_that_moves_is_reached_at_its_new_address() -> None:
    async def test() -> None:
        async with cluster(1, 2) as (a, b):
            a.transport.send(2, 1, hb(2, 1, 0))
            await b.receive(1)
            await b.stop_server()
            await b.serve()  # a new ephemeral port
            a.transport.set_peer(2, b.address)
            a.transport.send(2, 1, hb(2, 1, 1))
            assert [m.commit for _, _, m in await b.receive(1)] == [1]

    run(test)


def test_unknown_and_removed_peers_drop_messages() -> None:
    async def test() -> None:
        async with cluster(1, 2) as (a, b):
            a.transport.send(7, 1, hb(7, 1, 0))
            a.transport.send(2, 1, hb(2, 1, 0))
            a.transport.remove_peer(2)  # also drops what is pending for it this turn
            m = a.transport.metrics
            assert (m.dropped_no_peer, m.drops) == (1, 1)
            assert a.transport.peer_status() == []
            a.transport.set_peer(2, b.address)
            a.transport.send(2, 1, hb(2, 1, 1))
            assert [x.commit for _, _, x in await b.receive(1)] == [1]

    run(test)


def test_misuse_is_refused() -> None:
    async def test() -> None:
        async with cluster(1) as (a,):
            with pytest.raises(InvalidArgument):
                a.transport.set_peer(1, "127.0.0.1:1")
            with pytest.raises(InvalidArgument):
                a.transport.set_peer(2, "")
            with pytest.raises(TransportError):
                await a.transport.start()
            a.transport.set_peer(2, "127.0.0.1:1")
            with pytest.raises(TransportError):  # a local message has no wire form
                a.transport.send(2, 1, Message(MessageType.HUP))
        with pytest.raises(InvalidArgument):
            GrpcTransport(0, "c", lambda f, m: None, lambda n: None)

    run(test)


def test_stop_ends_every_task_and_is_idempotent() -> None:
    async def test() -> None:
        async with cluster(1, 2, 3) as (a, b, _c):
            a.transport.send(2, 1, hb(2, 1, 0))
            await b.receive(1)
            a.transport.set_peer(4, "127.0.0.1:1")  # a link stuck in backoff
            await a.transport.stop()
            await a.transport.stop()
            a.transport.send(3, 1, hb(3, 1, 0))  # ignored after stop
            assert a.transport.metrics.messages_sent == 1
            # A stopped transport refuses inbound streams.
            acks, code, _ = await raw_stream(a.address, [batch(1)])
            assert (acks, code) == ([], grpc.StatusCode.UNAVAILABLE)
        # run() asserts that no task is left behind.

    run(test)
