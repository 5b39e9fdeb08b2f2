"""The production transport: Raft messages between nodes over gRPC (asyncio).

Contract:
- Every message for one peer, of every group, travels over one long-lived bidirectional
  stream per ordered node pair (``PeerLink``): a unary RPC per message would cost ~0.3 ms
  of CPU here. Messages sent during one loop turn leave as one ``RaftBatch`` (``Outbox``),
  cut at ``max_batch_bytes``; batches to one peer are written in order.
- ``send()`` encodes at once (so a message that has no wire form raises ``CodecError`` at
  the call site, and later mutation of ``msg`` cannot change what is sent) and never blocks.
  A message for a node without an address is dropped and counted.
- Failures are not raised: a link that cannot connect, or whose stream breaks, calls
  ``on_unreachable(node_id)`` once per failed attempt and retries with capped exponential
  backoff and jitter from the injected ``random.Random``.
- The node runtime owns the gRPC server: it registers ``servicer()`` on it (with
  ``SERVER_OPTIONS``). This class owns only client channels and its tasks; ``stop()`` ends
  them all and closes every channel before it returns.
- Everything runs on one event loop thread; nothing here is thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field

from kvcluster.errors import InvalidArgument
from kvcluster.raft.types import Message
from kvcluster.transport.backoff import Backoff, BackoffPolicy
from kvcluster.transport.base import OnMessages, OnUnreachable, Outbox
from kvcluster.transport.codec import encode_message
from kvcluster.transport.errors import TransportError
from kvcluster.transport.metrics import TransportMetrics
from kvcluster.transport.peer import ChannelOptions, PeerLink
from kvcluster.transport.servicer import RaftPeerService
from kvcluster.v1 import raft_pb2

__all__ = ["SERVER_OPTIONS", "GrpcTransport", "GrpcTransportConfig", "PeerStatus"]

log = logging.getLogger(__name__)

MiB = 1 << 20
MAX_MESSAGE_BYTES = 256 * MiB
"""gRPC message limit: snapshots travel inline in a batch for now."""

SERVER_OPTIONS: ChannelOptions = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Accept the clients' keepalive pings (the default allows one per 5 minutes and answers
    # more with GOAWAY "too_many_pings"), and ping idle clients ourselves.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
)
"""Options the node runtime must give the gRPC server that hosts ``servicer()``."""


@dataclass(frozen=True, slots=True)
class GrpcTransportConfig:
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    max_queued_batches: int = 1024  # per peer; the oldest are dropped beyond this
    max_queued_bytes: int = 64 * MiB  # per peer; ditto (the newest batch is always kept)
    max_batch_bytes: int = 4 * MiB  # a turn's messages are cut into batches of about this
    max_message_bytes: int = MAX_MESSAGE_BYTES  # larger messages are dropped and counted
    # Loopback and LAN: a dead peer that keeps its TCP connection (paused process, lost
    # host) is noticed within keepalive_time + keepalive_timeout.
    keepalive_time_ms: int = 10_000
    keepalive_timeout_ms: int = 5_000

    def __post_init__(self) -> None:
        for name in ("max_queued_batches", "max_queued_bytes", "max_batch_bytes"):
            if getattr(self, name) < 1:
                raise InvalidArgument(f"{name} must be >= 1")
        if not 1 <= self.max_message_bytes <= MAX_MESSAGE_BYTES:
            raise InvalidArgument(f"max_message_bytes must be in [1, {MAX_MESSAGE_BYTES}]")

    def channel_options(self) -> ChannelOptions:
        b = self.backoff
        return (
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.keepalive_time_ms", self.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", self.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            # One channel per connection attempt, with its own subchannel: gRPC's reconnect
            # backoff (shared through the global subchannel pool) never delays ours.
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.initial_reconnect_backoff_ms", int(b.initial * 1000)),
            ("grpc.min_reconnect_backoff_ms", int(b.initial * 1000)),
            ("grpc.max_reconnect_backoff_ms", int(b.maximum * 1000)),
            ("grpc.enable_retries", 0),
        )


@dataclass(frozen=True, slots=True)
class PeerStatus:
    node_id: int
    address: str
    connected: bool  # the peer acknowledged a batch on the current stream
    queued_batches: int
    failed_attempts: int  # since the last proven connection


class GrpcTransport:
    """Batched Raft message transport over one gRPC stream per peer. See the module doc."""

    def __init__(
        self,
        node_id: int,
        cluster_id: str,
        on_messages: OnMessages,
        on_unreachable: OnUnreachable,
        *,
        config: GrpcTransportConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if node_id < 1:
            raise InvalidArgument(f"node ids start at 1, got {node_id}")
        if not cluster_id:
            raise InvalidArgument("cluster_id must not be empty")
        self._node_id = node_id
        self.cluster_id = cluster_id
        self.config = config or GrpcTransportConfig()
        self._metrics = TransportMetrics()
        self._on_unreachable = on_unreachable
        self._rng = rng if rng is not None else random.Random()
        self._options = self.config.channel_options()
        self._peers: dict[int, PeerLink] = {}
        self._outbox: Outbox[bytes] = Outbox(self._flush_peer)
        self._retiring: set[asyncio.Task[None]] = set()  # tasks of replaced links, ending
        self._started = False
        self._stopped = False
        self._service = RaftPeerService(
            node_id, cluster_id, on_messages, self._metrics, lambda: self._stopped
        )

    @property
    def node_id(self) -> int:
        return self._node_id

    @property
    def metrics(self) -> TransportMetrics:
        return self._metrics

    def servicer(self) -> RaftPeerService:
        """The ``RaftPeer`` implementation to register on the node's gRPC server."""
        return self._service

    # -- peers ------------------------------------------------------------------------------
    def set_peer(self, node_id: int, address: str) -> None:
        if node_id == self._node_id or node_id < 1:
            raise InvalidArgument(f"cannot add node {node_id} as a peer of node {self._node_id}")
        if not address:
            raise InvalidArgument(f"empty address for node {node_id}")
        link = self._peers.get(node_id)
        if link is not None:
            if link.address == address:
                return
            log.info("raft peer %d moved: %s -> %s", node_id, link.address, address)
            self._retire(link)
            link.address = address
            link.backoff.reset()
        else:
            link = PeerLink(
                node_id,
                address,
                backoff=Backoff(self.config.backoff, random.Random(self._rng.getrandbits(64))),
                metrics=self._metrics,
                channel_options=self._options,
                max_queued_batches=self.config.max_queued_batches,
                max_queued_bytes=self.config.max_queued_bytes,
                report_unreachable=self._report_unreachable,
            )
            self._peers[node_id] = link
        if self._started and not self._stopped:
            link.start()

    def remove_peer(self, node_id: int) -> None:
        link = self._peers.pop(node_id, None)
        if link is None:
            return
        self._metrics.drops += self._outbox.discard(node_id) + link.clear()
        self._retire(link)

    def peer_status(self) -> list[PeerStatus]:
        return [
            PeerStatus(n, p.address, p.connected, p.queued_batches, p.backoff.attempt)
            for n, p in sorted(self._peers.items())
        ]

    def _retire(self, link: PeerLink) -> None:
        task, link.task = link.task, None
        if task is not None and not task.done():
            task.cancel()
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    # -- sending ----------------------------------------------------------------------------
    def send(self, to_node: int, group_id: int, msg: Message) -> None:
        if self._stopped:
            return
        if to_node not in self._peers:
            self._metrics.dropped_no_peer += 1
            return
        payload = encode_message(msg)
        if len(payload) > self.config.max_message_bytes - 64:  # room for the batch framing
            self._metrics.oversized_messages += 1
            log.error(
                "dropping a %s message of %d bytes for node %d: over the %d byte limit",
                msg.type.name,
                len(payload),
                to_node,
                self.config.max_message_bytes,
            )
            return
        self._outbox.add(to_node, group_id, payload)

    def flush(self) -> None:
        self._outbox.flush()

    def _flush_peer(self, to_node: int, items: list[tuple[int, bytes]]) -> None:
        link = self._peers.get(to_node)
        if link is None:  # removed during this turn
            self._metrics.dropped_no_peer += len(items)
            return
        limit = self.config.max_batch_bytes
        batch = raft_pb2.RaftBatch(
            from_node=self._node_id, to_node=to_node, cluster_id=self.cluster_id
        )
        add = batch.messages.add
        count = nbytes = 0
        for group_id, payload in items:
            if count and nbytes + len(payload) > limit:
                link.enqueue(batch, count, nbytes)
                batch = raft_pb2.RaftBatch(
                    from_node=self._node_id, to_node=to_node, cluster_id=self.cluster_id
                )
                add = batch.messages.add
                count = nbytes = 0
            add(group_id=group_id, payload=payload)
            count += 1
            nbytes += len(payload)
        link.enqueue(batch, count, nbytes)

    def _report_unreachable(self, node_id: int) -> None:
        self._metrics.unreachable_reports += 1
        try:
            self._on_unreachable(node_id)
        except Exception:
            self._metrics.callback_errors += 1
            log.exception("on_unreachable(%d) failed", node_id)

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        if self._started:
            raise TransportError("the transport was already started")
        self._started = True
        for link in self._peers.values():
            link.start()

    async def stop(self) -> None:
        """Stop sending, end every link task and close every channel. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._metrics.drops += self._outbox.discard()
        tasks = set(self._retiring)
        for link in self._peers.values():
            if link.task is not None:
                tasks.add(link.task)
                link.task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._retiring.clear()
        for link in self._peers.values():  # after the tasks: a cancelled write re-queues
            self._metrics.drops += link.clear()
