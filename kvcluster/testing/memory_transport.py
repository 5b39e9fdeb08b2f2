"""An in-memory transport for runtime tests: ``GrpcTransport``'s interface, no sockets.

Contract:
- ``MemoryTransport`` has the ``kvcluster.transport.Transport`` interface (``set_peer``,
  ``remove_peer``, ``send``, ``flush``, ``start``, ``stop``, ``metrics``) and the same
  batching: messages sent to one peer in one loop turn are delivered as one batch through
  the receiver's ``on_messages(from_node, [(group_id, msg), ...])``.
- Every message goes through ``kvcluster.transport.codec`` on the way, so sender and
  receiver never share a mutable object and a message without a wire form fails as it would
  in production.
- ``MemoryNetwork`` connects the transports of one test. It never reads a clock: a delay is a
  number of whole event loop turns, randomness (drops) comes from the injected
  ``random.Random``. Links are directed: ``cut(a, b)`` blocks a -> b only; ``partition``
  blocks both ways between sides; ``isolate`` cuts a node off; ``heal`` undoes all of it.
- A batch on a cut link, or for a node whose transport is not started, is lost and the sender
  is told through ``on_unreachable(node)`` — like a broken stream — once per outage: again
  only after a batch to that node was delivered. A random drop is silent (a lost write).
- Batches on one link keep their order unless the link's delay is lowered while some are in
  flight (then later ones may overtake: Raft must tolerate that anyway).
- Everything runs on the event loop thread; ``await network.drain()`` returns once nothing is
  pending or in flight. An exception from a callback is logged and kept in
  ``network.errors`` (a test asserts it is empty); it never breaks the network.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Iterable
from typing import Final, TypeVar

from kvcluster.errors import InvalidArgument
from kvcluster.raft.types import Message
from kvcluster.transport.base import OnMessages, OnUnreachable, Outbox
from kvcluster.transport.codec import decode_message, encode_message
from kvcluster.transport.errors import TransportError
from kvcluster.transport.metrics import TransportMetrics

__all__ = ["ANY", "MemoryNetwork", "MemoryTransport"]

ANY: Final = 0
"""Wildcard node id for ``set_drop_rate`` / ``set_delay`` (0 is never a real node id)."""

_Batch = list[tuple[int, bytes]]
V = TypeVar("V")
log = logging.getLogger(__name__)


class MemoryNetwork:
    """The links between the ``MemoryTransport``s of one test."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng if rng is not None else random.Random(0)
        self._nodes: dict[int, MemoryTransport] = {}  # started transports by node id
        self._cut: set[tuple[int, int]] = set()  # directed (src, dst) pairs
        self._isolated: set[int] = set()
        self._drop_rate: dict[tuple[int, int], float] = {}  # (src|ANY, dst|ANY) -> p
        self._delay: dict[tuple[int, int], int] = {}  # (src|ANY, dst|ANY) -> loop turns
        self._transports: list[MemoryTransport] = []  # every transport made on this network
        self.in_flight = 0  # batches scheduled for delivery
        self.batches_delivered = 0
        self.batches_lost = 0  # on a cut link or to a stopped node
        self.batches_dropped = 0  # random drops
        self.errors: list[Exception] = []  # raised by on_messages / on_unreachable callbacks

    # -- topology ---------------------------------------------------------------------------
    def cut(self, src: int, dst: int) -> None:
        """Block ``src -> dst`` (one way)."""
        self._cut.add((src, dst))

    def uncut(self, src: int, dst: int) -> None:
        self._cut.discard((src, dst))

    def partition(self, *sides: Iterable[int]) -> None:
        """Block both ways between every two of ``sides`` (links within a side stay)."""
        groups = [list(s) for s in sides]
        for a, b in itertools.combinations(groups, 2):
            for x in a:
                for y in b:
                    self._cut.add((x, y))
                    self._cut.add((y, x))

    def isolate(self, node: int) -> None:
        """Cut ``node`` off from every other node, both ways (also nodes started later)."""
        self._isolated.add(node)

    def heal(self) -> None:
        """Restore every link: no cuts, no isolation, no drops, no delays."""
        self._cut.clear()
        self._isolated.clear()
        self._drop_rate.clear()
        self._delay.clear()

    def blocked(self, src: int, dst: int) -> bool:
        return src in self._isolated or dst in self._isolated or (src, dst) in self._cut

    def set_drop_rate(self, p: float, src: int = ANY, dst: int = ANY) -> None:
        """Drop each batch on the link(s) with probability ``p``, silently."""
        if not 0.0 <= p <= 1.0:
            raise InvalidArgument(f"drop rate must be in [0, 1], got {p}")
        self._drop_rate[src, dst] = p

    def set_delay(self, turns: int, src: int = ANY, dst: int = ANY) -> None:
        """Deliver batches on the link(s) ``turns`` loop turns later than the first turn."""
        if turns < 0:
            raise InvalidArgument(f"delay must be >= 0 turns, got {turns}")
        self._delay[src, dst] = turns

    @staticmethod
    def _lookup(table: dict[tuple[int, int], V], src: int, dst: int, default: V) -> V:
        for key in ((src, dst), (src, ANY), (ANY, dst), (ANY, ANY)):
            if key in table:
                return table[key]
        return default

    # -- moving batches ---------------------------------------------------------------------
    def _attach(self, t: MemoryTransport) -> None:
        if t.node_id in self._nodes:
            raise TransportError(f"node {t.node_id} already has a started transport")
        self._nodes[t.node_id] = t

    def _detach(self, t: MemoryTransport) -> None:
        if self._nodes.get(t.node_id) is t:
            del self._nodes[t.node_id]

    def _reachable(self, src: int, dst: int) -> bool:
        return not self.blocked(src, dst) and dst in self._nodes

    def _transmit(self, sender: MemoryTransport, dst: int, batch: _Batch) -> bool:
        """Put one batch on the wire. False if the link is down (the batch is lost)."""
        src = sender.node_id
        if not self._reachable(src, dst):
            self.batches_lost += 1
            return False
        p = self._lookup(self._drop_rate, src, dst, 0.0)
        if p and self._rng.random() < p:
            self.batches_dropped += 1
            return True
        self.in_flight += 1
        turns = self._lookup(self._delay, src, dst, 0)
        loop = asyncio.get_running_loop()
        loop.call_soon(self._hop, loop, turns, sender, dst, batch)
        return True

    def _hop(
        self,
        loop: asyncio.AbstractEventLoop,
        turns: int,
        sender: MemoryTransport,
        dst: int,
        batch: _Batch,
    ) -> None:
        if turns > 0:
            loop.call_soon(self._hop, loop, turns - 1, sender, dst, batch)
            return
        self.in_flight -= 1
        src = sender.node_id
        # The link may have gone down (or the receiver stopped) while the batch was in flight.
        if not self._reachable(src, dst):
            self.batches_lost += 1
            sender._link_failed(dst)
            return
        self.batches_delivered += 1
        sender._link_ok(dst)
        self._nodes[dst]._receive(src, batch)

    def pending(self) -> int:
        """Batches not yet delivered: in flight plus waiting in the transports' outboxes."""
        return self.in_flight + sum(t._pending() for t in self._transports)

    async def drain(self, max_turns: int = 10_000) -> None:
        """Run the loop until nothing is pending or in flight (budget: ``max_turns`` turns)."""
        for _ in range(max_turns):
            if not self.pending():
                return
            await asyncio.sleep(0)  # one loop turn, not wall-clock time
        raise TransportError(f"the network did not drain within {max_turns} loop turns")


class MemoryTransport:
    """One node's transport on a ``MemoryNetwork``."""

    def __init__(
        self,
        network: MemoryNetwork,
        node_id: int,
        on_messages: OnMessages,
        on_unreachable: OnUnreachable,
    ) -> None:
        if node_id < 1:
            raise InvalidArgument(f"node ids start at 1, got {node_id}")
        self._network = network
        self._node_id = node_id
        self._on_messages = on_messages
        self._on_unreachable = on_unreachable
        self._metrics = TransportMetrics()
        self._peers: dict[int, str] = {}
        self._outbox: Outbox[bytes] = Outbox(self._flush_peer)
        self._down: set[int] = set()  # peers reported unreachable and not delivered to since
        self._state = "new"  # new -> started -> stopped
        network._transports.append(self)

    @property
    def node_id(self) -> int:
        return self._node_id

    @property
    def metrics(self) -> TransportMetrics:
        return self._metrics

    def set_peer(self, node_id: int, address: str = "") -> None:
        if node_id == self._node_id or node_id < 1:
            raise InvalidArgument(f"cannot add node {node_id} as a peer of node {self._node_id}")
        self._peers[node_id] = address

    def remove_peer(self, node_id: int) -> None:
        if self._peers.pop(node_id, None) is not None:
            self._metrics.drops += self._outbox.discard(node_id)
            self._down.discard(node_id)

    def send(self, to_node: int, group_id: int, msg: Message) -> None:
        if self._state == "stopped":
            return
        if to_node not in self._peers:
            self._metrics.dropped_no_peer += 1
            return
        self._outbox.add(to_node, group_id, encode_message(msg))

    def flush(self) -> None:
        self._outbox.flush()

    async def start(self) -> None:
        if self._state != "new":
            raise TransportError(f"the transport of node {self._node_id} was already started")
        self._network._attach(self)
        self._state = "started"

    async def stop(self) -> None:
        if self._state == "stopped":
            return
        self._network._detach(self)
        self._state = "stopped"
        self._metrics.drops += self._outbox.discard()

    # -- called by the network --------------------------------------------------------------
    def _pending(self) -> int:
        return len(self._outbox)

    def _flush_peer(self, to_node: int, batch: _Batch) -> None:
        m = self._metrics
        if to_node not in self._peers:  # removed during this turn
            m.dropped_no_peer += len(batch)
            return
        if self._state != "started" or not self._network._transmit(self, to_node, batch):
            m.drops += len(batch)
            m.batches_dropped += 1
            if self._state == "started":
                self._link_failed(to_node)
            return
        m.batches_sent += 1
        m.messages_sent += len(batch)
        m.bytes_sent += sum(len(p) for _, p in batch)
        m.observe_batch_size(len(batch))

    def _link_failed(self, to_node: int) -> None:
        if to_node in self._down or self._state != "started" or to_node not in self._peers:
            return
        self._down.add(to_node)
        self._metrics.unreachable_reports += 1
        try:
            self._on_unreachable(to_node)
        except Exception as e:
            self._callback_failed(e, "on_unreachable")

    def _link_ok(self, to_node: int) -> None:
        self._down.discard(to_node)

    def _receive(self, from_node: int, batch: _Batch) -> None:
        m = self._metrics
        m.batches_received += 1
        m.messages_received += len(batch)
        m.bytes_received += sum(len(p) for _, p in batch)
        try:
            self._on_messages(from_node, [(g, decode_message(p)) for g, p in batch])
        except Exception as e:
            self._callback_failed(e, "on_messages")

    def _callback_failed(self, e: Exception, what: str) -> None:
        # Never breaks the network; a test asserts ``not network.errors`` to see it.
        self._metrics.callback_errors += 1
        self._network.errors.append(e)
        log.exception("%s of node %d raised", what, self._node_id)
