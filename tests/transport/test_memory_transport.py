"""The in-memory transport: batching like GrpcTransport, and a network that partitions,
drops and delays by loop turns — deterministically, with no clock."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import pytest

from kvcluster.errors import InvalidArgument
from kvcluster.raft.types import Entry, Message, MessageType
from kvcluster.testing.memory_transport import MemoryNetwork, MemoryTransport
from kvcluster.transport import CodecError, Transport, TransportError

Batch = tuple[int, list[tuple[int, Message]]]


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 30.0))


def hb(to: int, frm: int, seq: int) -> Message:
    return Message(MessageType.HEARTBEAT, to=to, from_=frm, term=1, commit=seq)


class Node:
    def __init__(self, net: MemoryNetwork, node_id: int) -> None:
        self.node_id = node_id
        self.batches: list[Batch] = []
        self.unreachable: list[int] = []
        self.transport = MemoryTransport(
            net, node_id, lambda f, ms: self.batches.append((f, ms)), self.unreachable.append
        )

    def commits(self, frm: int | None = None) -> list[int]:
        return [m.commit for f, ms in self.batches if frm in (None, f) for _, m in ms]


async def mesh(net: MemoryNetwork, *ids: int) -> list[Node]:
    nodes = [Node(net, i) for i in ids]
    for n in nodes:
        for p in nodes:
            if p is not n:
                n.transport.set_peer(p.node_id, f"mem:{p.node_id}")
        await n.transport.start()
    return nodes


def test_memory_transport_is_a_transport() -> None:
    async def test() -> None:
        t: Transport = MemoryTransport(MemoryNetwork(), 1, lambda f, m: None, lambda n: None)
        assert t.node_id == 1

    run(test)


def test_one_turn_is_one_batch_per_peer_and_messages_are_copies() -> None:
    async def test() -> None:
        net = MemoryNetwork()
        a, b, c = await mesh(net, 1, 2, 3)
        app = Message(MessageType.APP, to=2, from_=1, term=1, entries=[Entry(1, 1, data=b"x")])
        a.transport.send(2, 9, app)
        app.entries.append(Entry(1, 2))  # mutating after send changes nothing in flight
        for seq in range(5):
            a.transport.send(2, seq, hb(2, 1, seq))
            a.transport.send(3, seq, hb(3, 1, seq))
        await net.drain()
        assert len(b.batches) == 1 and len(c.batches) == 1
        frm, msgs = b.batches[0]
        assert frm == 1 and [g for g, _ in msgs] == [9, 0, 1, 2, 3, 4]
        assert msgs[0][1].entries == [Entry(1, 1, data=b"x")]
        assert c.commits(1) == [0, 1, 2, 3, 4]
        assert a.transport.metrics.batches_sent == 2
        assert b.transport.metrics.messages_received == 6
        with pytest.raises(CodecError):
            a.transport.send(2, 1, Message(MessageType.HUP))
        assert not net.errors

    run(test)


def test_partition_blocks_both_ways_and_reports_unreachable_once_per_outage() -> None:
    async def test() -> None:
        net = MemoryNetwork()
        a, b, c = await mesh(net, 1, 2, 3)
        net.partition([1], [2, 3])
        for seq in range(3):
            a.transport.send(2, 1, hb(2, 1, seq))
            b.transport.send(1, 1, hb(1, 2, seq))
            b.transport.send(3, 1, hb(3, 2, seq))
            await net.drain()
        assert a.commits() == [] and b.commits() == []
        assert c.commits(2) == [0, 1, 2]  # within a side, links work
        assert a.unreachable == [2] and b.unreachable == [1]  # once, not per batch
        assert a.transport.metrics.drops == 3

        net.heal()
        a.transport.send(2, 1, hb(2, 1, 10))
        await net.drain()
        assert b.commits(1) == [10]
        net.isolate(2)  # a new outage is reported again
        a.transport.send(2, 1, hb(2, 1, 11))
        c.transport.send(2, 1, hb(2, 3, 11))
        await net.drain()
        assert a.unreachable == [2, 2] and c.unreachable == [2]
        assert b.commits(1) == [10]

    run(test)


def test_a_one_way_cut_blocks_only_that_direction() -> None:
    async def test() -> None:
        net = MemoryNetwork()
        a, b = await mesh(net, 1, 2)
        net.cut(1, 2)
        a.transport.send(2, 1, hb(2, 1, 0))
        b.transport.send(1, 1, hb(1, 2, 0))
        await net.drain()
        assert (a.commits(), b.commits()) == ([0], [])
        assert (a.unreachable, b.unreachable) == ([2], [])
        net.uncut(1, 2)
        a.transport.send(2, 1, hb(2, 1, 1))
        await net.drain()
        assert b.commits() == [1]

    run(test)


def test_drops_are_silent_and_decided_by_the_seed() -> None:
    async def delivered(seed: int) -> list[int]:
        net = MemoryNetwork(random.Random(seed))
        a, b = await mesh(net, 1, 2)
        net.set_drop_rate(0.5, src=1)
        for seq in range(40):
            a.transport.send(2, 1, hb(2, 1, seq))
            b.transport.send(1, 1, hb(1, 2, seq))
            await net.drain()
        assert a.unreachable == [] and a.commits() == list(range(40))  # only 1 -> 2 drops
        assert net.batches_dropped == 40 - len(b.commits())
        return b.commits()

    async def test() -> None:
        first = await delivered(seed=5)
        assert 5 < len(first) < 35
        assert await delivered(seed=5) == first
        assert await delivered(seed=6) != first

    run(test)


def test_delays_are_whole_loop_turns() -> None:
    async def arrival_turn(delay: int) -> int:
        """The loop turn (counted by a self-rescheduling callback) a batch arrives in."""
        net = MemoryNetwork()
        a, b = await mesh(net, 1, 2)
        net.set_delay(delay, 1, 2)
        loop = asyncio.get_running_loop()
        turn = 0
        arrived: list[int] = []

        def tick() -> None:
            nonlocal turn
            turn += 1
            if b.batches and not arrived:
                arrived.append(turn)
            if turn < 100:
                loop.call_soon(tick)

        a.transport.send(2, 1, hb(2, 1, 0))
        loop.call_soon(tick)
        await net.drain()
        while turn < 100:
            await asyncio.sleep(0)
        return arrived[0]

    async def test() -> None:
        base = await arrival_turn(0)
        assert [await arrival_turn(d) - base for d in (1, 3, 7)] == [1, 3, 7]

    run(test)


def test_a_delayed_link_is_overtaken_and_a_cut_in_flight_loses_the_batch() -> None:
    async def test() -> None:
        net = MemoryNetwork()
        a, b, c = await mesh(net, 1, 2, 3)
        net.set_delay(3, src=1)
        a.transport.send(2, 1, hb(2, 1, 1))
        c.transport.send(2, 1, hb(2, 3, 3))
        await net.drain()
        assert [f for f, _ in b.batches] == [3, 1]

        a.transport.send(2, 1, hb(2, 1, 2))
        for _ in range(2):  # flushed and in flight, not delivered yet
            await asyncio.sleep(0)
        assert net.in_flight == 1
        net.cut(1, 2)
        await net.drain()
        assert b.commits(1) == [1] and a.unreachable == [2]

    run(test)


def test_a_stopped_node_is_unreachable_until_a_new_transport_starts() -> None:
    async def test() -> None:
        net = MemoryNetwork()
        a, b = await mesh(net, 1, 2)
        await b.transport.stop()
        await b.transport.stop()
        a.transport.send(2, 1, hb(2, 1, 0))
        b.transport.send(1, 1, hb(1, 2, 0))  # ignored: stopped
        await net.drain()
        assert a.unreachable == [2] and a.commits() == []
        with pytest.raises(TransportError):
            await b.transport.start()

        b2 = Node(net, 2)
        b2.transport.set_peer(1, "mem:1")
        await b2.transport.start()
        with pytest.raises(TransportError):  # one started transport per node id
            await Node(net, 2).transport.start()
        a.transport.send(2, 1, hb(2, 1, 1))
        await net.drain()
        assert b2.commits() == [1] and b.commits() == []

    run(test)


def test_unknown_peers_misuse_and_callback_errors() -> None:
    async def test() -> None:
        net = MemoryNetwork()
        a, b = await mesh(net, 1, 2)
        a.transport.send(9, 1, hb(9, 1, 0))
        assert a.transport.metrics.dropped_no_peer == 1
        a.transport.send(2, 1, hb(2, 1, 0))
        a.transport.remove_peer(2)
        await net.drain()
        assert b.commits() == [] and a.transport.metrics.drops == 1
        with pytest.raises(InvalidArgument):
            a.transport.set_peer(1, "")
        with pytest.raises(InvalidArgument):
            net.set_drop_rate(1.5)
        with pytest.raises(InvalidArgument):
            net.set_delay(-1)

        def boom(frm: int, msgs: list[tuple[int, Message]]) -> None:
            raise RuntimeError("runtime bug")

        c = MemoryTransport(net, 3, boom, lambda n: None)
        await c.start()
        b.transport.set_peer(3, "mem:3")
        b.transport.send(3, 1, hb(3, 2, 0))
        b.transport.send(1, 1, hb(1, 2, 0))
        await net.drain()
        assert [type(e) for e in net.errors] == [RuntimeError]
        assert c.metrics.callback_errors == 1
        assert a.commits() == [0]  # the rest of the flush went through

    run(test)


def test_drain_has_a_budget() -> None:
    async def test() -> None:
        net = MemoryNetwork()
        a, b = await mesh(net, 1, 2)
        # An echo loop never quiets down.
        b.transport._on_messages = lambda f, ms: b.transport.send(1, 1, hb(1, 2, 0))
        a.transport._on_messages = lambda f, ms: a.transport.send(2, 1, hb(2, 1, 0))
        a.transport.send(2, 1, hb(2, 1, 0))
        with pytest.raises(TransportError, match="did not drain"):
            await net.drain(max_turns=50)
        await a.transport.stop()
        await net.drain()

    run(test)
