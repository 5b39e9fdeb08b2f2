"""What every transport offers the node runtime, and the per-turn batching they share.

Contract:
- A transport carries Raft messages between nodes; the runtime owns the Raft groups.
  ``send(to_node, group_id, msg)`` never blocks and never raises for network trouble (Raft
  tolerates loss); received messages arrive through ``on_messages(from_node, [(group_id,
  msg), ...])``, once per batch; ``on_unreachable(node_id)`` says that sending to a node
  failed, so the runtime can call ``RawNode.report_unreachable`` for its groups.
- Callbacks run on the event loop thread, from the transport's own callbacks and tasks —
  never from inside ``send()`` — so the runtime is never re-entered mid-Ready.
- ``Outbox``: everything sent to one peer during one event loop turn leaves as one batch. The
  first enqueue of a turn schedules the flush with ``loop.call_soon``; callbacks already
  queued for this turn run first, so messages sent by all of them join the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from kvcluster.raft.types import Message
from kvcluster.transport.metrics import TransportMetrics

__all__ = ["OnMessages", "OnUnreachable", "Outbox", "Transport"]

OnMessages = Callable[[int, list[tuple[int, Message]]], None]
"""``on_messages(from_node, [(group_id, message), ...])``: one received batch, in order."""

OnUnreachable = Callable[[int], None]
"""``on_unreachable(node_id)``: sending to ``node_id`` failed (rate-limited per attempt)."""


class Transport(Protocol):
    """The interface of ``GrpcTransport`` and ``kvcluster.testing.MemoryTransport``."""

    @property
    def node_id(self) -> int: ...

    @property
    def metrics(self) -> TransportMetrics: ...

    def set_peer(self, node_id: int, address: str) -> None:
        """Add a peer or change its address (the queue of unsent batches is kept)."""

    def remove_peer(self, node_id: int) -> None:
        """Forget a peer: close its stream and drop what was queued for it."""

    def send(self, to_node: int, group_id: int, msg: Message) -> None:
        """Queue ``msg`` for ``to_node``; it leaves with this loop turn's batch."""

    def flush(self) -> None:
        """Hand this turn's batches to the peers now instead of at the scheduled flush."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


T = TypeVar("T")


class Outbox(Generic[T]):
    """Items per destination node, accumulated until the end of the loop turn."""

    __slots__ = ("_flush_peer", "_handle", "_pending")

    def __init__(self, flush_peer: Callable[[int, list[tuple[int, T]]], None]) -> None:
        self._flush_peer = flush_peer
        self._pending: dict[int, list[tuple[int, T]]] = {}
        self._handle: asyncio.Handle | None = None  # set iff a flush is scheduled

    def __len__(self) -> int:
        """How many items are waiting for the flush."""
        return sum(len(items) for items in self._pending.values())

    def add(self, to_node: int, group_id: int, item: T) -> None:
        pending = self._pending.get(to_node)
        if pending is None:
            pending = self._pending[to_node] = []
            if self._handle is None:
                self._handle = asyncio.get_running_loop().call_soon(self.flush)
        pending.append((group_id, item))

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        pending, self._pending = self._pending, {}
        for to_node, items in pending.items():
            self._flush_peer(to_node, items)

    def discard(self, to_node: int | None = None) -> int:
        """Drop what is pending (for one node, or all); returns how many items were dropped."""
        if to_node is not None:
            return len(self._pending.pop(to_node, ()))
        n = len(self)
        self._pending.clear()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        return n
