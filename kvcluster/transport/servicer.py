"""The inbound half of the transport: the ``kvcluster.v1.RaftPeer`` service.

Contract:
- ``RaftPeerService.Stream`` takes a stream of ``RaftBatch``es from one peer. Each batch is
  checked, its payloads decoded, and ``on_messages(from_node, [(group_id, msg), ...])`` is
  called once per batch, in arrival order. A ``RaftAck`` (batches taken so far) follows the
  first batch of a stream — it proves the connection to the sender — and every
  ``ACK_EVERY``-th after it: an ack per batch would cost ~40% more CPU per batch, and the
  sender needs no more (it never waits for acks; HTTP/2 flow control paces its writes).
- A batch for another cluster (``cluster_id``), another node (``to_node``), or from no node
  (``from_node`` 0) is refused: logged, counted, and the stream is closed with
  ``FAILED_PRECONDITION`` and a message saying what did not match. Nothing is delivered.
- A payload that does not decode is skipped and counted; the rest of the batch is delivered.
  An exception from ``on_messages`` is logged and counted. Nothing a peer sends can raise out
  of the handler except the refusal above: the node never goes down for a bad peer.
- Once the transport is stopped, new and running streams are ended with ``UNAVAILABLE``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from kvcluster.raft.types import Message
from kvcluster.transport.base import OnMessages
from kvcluster.transport.codec import decode_message
from kvcluster.transport.errors import CodecError
from kvcluster.transport.metrics import TransportMetrics
from kvcluster.v1 import raft_pb2, raft_pb2_grpc

__all__ = ["ACK_EVERY", "RaftPeerService"]

log = logging.getLogger(__name__)

ACK_EVERY = 64
"""After the first batch of a stream, acknowledge every this many batches."""


class RaftPeerService(raft_pb2_grpc.RaftPeerServicer):
    """Register with ``raft_pb2_grpc.add_RaftPeerServicer_to_server(service, server)``."""

    def __init__(
        self,
        node_id: int,
        cluster_id: str,
        on_messages: OnMessages,
        metrics: TransportMetrics,
        is_stopped: Callable[[], bool],
    ) -> None:
        self._node_id = node_id
        self._cluster_id = cluster_id
        self._on_messages = on_messages
        self._metrics = metrics
        self._is_stopped = is_stopped

    def _refusal(self, batch: raft_pb2.RaftBatch) -> str | None:
        if batch.cluster_id != self._cluster_id:
            return (
                f"cluster id mismatch: node {self._node_id} belongs to cluster "
                f"{self._cluster_id!r}, the batch from node {batch.from_node} is for "
                f"{batch.cluster_id!r}"
            )
        if batch.to_node != self._node_id:
            return (
                f"node id mismatch: this is node {self._node_id}, the batch from node "
                f"{batch.from_node} is addressed to node {batch.to_node} (stale address?)"
            )
        if batch.from_node == 0:
            return "the batch names no sender (from_node 0)"
        return None

    async def Stream(
        self, request_iterator: AsyncIterator[raft_pb2.RaftBatch], context: Any
    ) -> AsyncIterator[raft_pb2.RaftAck]:
        m = self._metrics
        taken = 0
        malformed_logged = False
        if self._is_stopped():
            await context.abort(grpc.StatusCode.UNAVAILABLE, "raft transport stopped")
        async for batch in request_iterator:
            if self._is_stopped():
                await context.abort(grpc.StatusCode.UNAVAILABLE, "raft transport stopped")
            refusal = self._refusal(batch)
            if refusal is not None:
                m.refused_streams += 1
                log.warning("refusing raft stream from %s: %s", context.peer(), refusal)
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, refusal)
            from_node = batch.from_node
            delivered: list[tuple[int, Message]] = []
            nbytes = 0
            for gm in batch.messages:
                payload = gm.payload
                nbytes += len(payload)
                try:
                    delivered.append((gm.group_id, decode_message(payload)))
                except CodecError as e:
                    m.malformed_messages += 1
                    level = logging.DEBUG if malformed_logged else logging.WARNING
                    malformed_logged = True
                    log.log(level, "skipping a message from node %d: %s", from_node, e)
            taken += 1
            m.batches_received += 1
            m.messages_received += len(delivered)
            m.bytes_received += nbytes
            if delivered:
                try:
                    self._on_messages(from_node, delivered)
                except Exception:
                    m.callback_errors += 1
                    log.exception("on_messages failed for a batch from node %d", from_node)
            if taken == 1 or taken % ACK_EVERY == 0:
                yield raft_pb2.RaftAck(batches=taken)
