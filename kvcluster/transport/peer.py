"""The outbound half of the transport: one long-lived gRPC stream to one peer.

Contract:
- A ``PeerLink`` owns one task that keeps one bidirectional ``RaftPeer/Stream`` call open to
  the peer's address and writes the peer's queued ``RaftBatch``es to it, in order, one at a
  time. Acks (``RaftAck``, sparse) are read by a helper task; the first ack on a connection
  proves it and resets the backoff. Writes never wait for acks.
- The queue is bounded (batches and bytes): when the peer is slow or down the *oldest*
  batches are dropped and counted; the batch just added is always kept. Raft tolerates loss.
- A connection attempt fails when the call fails, the stream ends, or a write fails. Then the
  link reports the peer unreachable (exactly once per failed attempt), closes the channel,
  waits a backoff delay and dials again with a fresh channel. A batch whose write failed goes
  back to the head of the queue (so a peer may rarely see a batch twice; a batch written
  just before a stream broke may be lost: Raft tolerates both). Nothing here raises to the
  caller; only cancellation ends the task.
- Each attempt uses a new channel with a local subchannel pool, so gRPC's own reconnect
  backoff never stacks on ours: the schedule is ``Backoff`` alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import grpc.aio

from kvcluster.transport.backoff import Backoff
from kvcluster.transport.metrics import TransportMetrics
from kvcluster.v1 import raft_pb2, raft_pb2_grpc

__all__ = ["PeerLink"]

log = logging.getLogger(__name__)

ChannelOptions = Sequence[tuple[str, int | str]]


class _QueuedBatch:
    __slots__ = ("batch", "messages", "nbytes")

    def __init__(self, batch: raft_pb2.RaftBatch, messages: int, nbytes: int) -> None:
        self.batch = batch
        self.messages = messages
        self.nbytes = nbytes


class PeerLink:
    """Queue and stream to one peer. Created and driven by ``GrpcTransport``."""

    def __init__(
        self,
        node_id: int,
        address: str,
        *,
        backoff: Backoff,
        metrics: TransportMetrics,
        channel_options: ChannelOptions,
        max_queued_batches: int,
        max_queued_bytes: int,
        report_unreachable: Callable[[int], None],
    ) -> None:
        self.node_id = node_id
        self.address = address
        self.backoff = backoff
        self.connected = False  # an ack arrived on the current connection
        self.acked = 0  # the latest ack on this connection (acks are sparse: ACK_EVERY)
        self._metrics = metrics
        self._options = channel_options
        self._max_batches = max_queued_batches
        self._max_bytes = max_queued_bytes
        self._report_unreachable = report_unreachable
        self._queue: deque[_QueuedBatch] = deque()
        self._queued_bytes = 0  # invariant: the sum of nbytes over _queue
        self._wakeup = asyncio.Event()  # set when the queue gains a batch or the stream ends
        self.task: asyncio.Task[None] | None = None

    # -- queue (event loop thread, synchronous) ---------------------------------------------
    @property
    def queued_batches(self) -> int:
        return len(self._queue)

    def enqueue(self, batch: raft_pb2.RaftBatch, messages: int, nbytes: int) -> None:
        q = self._queue
        q.append(_QueuedBatch(batch, messages, nbytes))
        self._queued_bytes += nbytes
        self._trim()
        self._wakeup.set()

    def _requeue(self, item: _QueuedBatch) -> None:
        """Put back a batch whose write failed: it goes first on the next connection (the
        peer may see it twice if it had arrived after all; Raft tolerates duplicates)."""
        self._queue.appendleft(item)
        self._queued_bytes += item.nbytes
        self._trim()

    def _trim(self) -> None:
        q = self._queue
        m = self._metrics
        while len(q) > 1 and (len(q) > self._max_batches or self._queued_bytes > self._max_bytes):
            old = q.popleft()
            self._queued_bytes -= old.nbytes
            m.drops += old.messages
            m.batches_dropped += 1

    def clear(self) -> int:
        """Drop everything queued; returns how many messages were dropped."""
        n = sum(b.messages for b in self._queue)
        self._queue.clear()
        self._queued_bytes = 0
        return n

    # -- the task ---------------------------------------------------------------------------
    def start(self) -> None:
        assert self.task is None or self.task.done()
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name=f"raft-peer-{self.node_id}"
        )

    async def _run(self) -> None:
        first = True
        while True:
            if not first:
                self._metrics.reconnects += 1
            first = False
            try:
                was_connected, reason = await self._attempt()
            except Exception as e:  # a bug or a bad address: keep the link alive regardless
                log.exception("raft peer %d: connection attempt failed", self.node_id)
                was_connected, reason = False, _describe(e)
            delay = self.backoff.next_delay()
            attempt = self.backoff.attempt
            # Say it once when a peer goes away, then now and then while it stays away.
            loud = was_connected or attempt == 1 or attempt % 32 == 0
            log.log(
                logging.WARNING if loud else logging.DEBUG,
                "raft peer %d at %s unreachable (attempt %d, retry in %.0f ms): %s",
                self.node_id,
                self.address,
                attempt,
                delay * 1000,
                reason,
            )
            self._report_unreachable(self.node_id)
            await asyncio.sleep(delay)

    async def _attempt(self) -> tuple[bool, str]:
        """One connection: stream until it fails. Returns (was it proven, why it ended)."""
        self.connected = False
        self.acked = 0
        channel = grpc.aio.insecure_channel(self.address, options=self._options)
        reader: asyncio.Task[str] | None = None
        call: Any = None
        try:
            stub = raft_pb2_grpc.RaftPeerStub(channel)
            call = stub.Stream(wait_for_ready=False)
            reader = asyncio.get_running_loop().create_task(
                self._read_acks(call), name=f"raft-peer-{self.node_id}-acks"
            )
            reason = await self._pump(call, reader)
            return self.connected, reason
        finally:
            if call is not None:
                call.cancel()
            if reader is not None:
                reader.cancel()
                await asyncio.wait((reader,))
            await channel.close()

    async def _pump(self, call: Any, reader: asyncio.Task[str]) -> str:
        q = self._queue
        m = self._metrics
        wakeup = self._wakeup
        while True:
            if not q and not reader.done():
                wakeup.clear()
                await wakeup.wait()
            if reader.done():
                return reader.result()
            if not q:
                continue
            item = q.popleft()
            self._queued_bytes -= item.nbytes
            try:
                await call.write(item.batch)
            except asyncio.CancelledError:
                self._requeue(item)
                if _cancelling():
                    raise
                return "stream cancelled"
            except Exception as e:
                self._requeue(item)
                return _describe(e)
            m.batches_sent += 1
            m.messages_sent += item.messages
            m.bytes_sent += item.nbytes
            m.observe_batch_size(item.messages)

    async def _read_acks(self, call: Any) -> str:
        """Read acks until the stream ends; returns why it ended. Sets ``_wakeup`` on exit."""
        try:
            while True:
                ack = await call.read()
                if ack is grpc.aio.EOF:
                    return "stream closed by the peer"
                if not self.connected:
                    self.connected = True
                    self.backoff.reset()
                    log.info("raft peer %d at %s connected", self.node_id, self.address)
                self.acked = ack.batches
        except asyncio.CancelledError:
            if _cancelling():
                raise
            return "stream cancelled"
        except Exception as e:
            return _describe(e)
        finally:
            self._wakeup.set()


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _describe(e: BaseException) -> str:
    if isinstance(e, grpc.aio.AioRpcError):
        return f"{e.code().name}: {e.details()}"
    return f"{type(e).__name__}: {e}"
