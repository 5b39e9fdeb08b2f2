"""kvcluster.transport — Raft messages between nodes, batched per node pair over gRPC.

The only package that touches gRPC for peer traffic. ``GrpcTransport`` is the production
transport; ``kvcluster.testing.memory_transport.MemoryTransport`` has the same ``Transport``
interface over an in-memory network. ``codec`` is the wire form of one Raft message (msgpack).

Choices, and why:

- One client stream per *ordered* node pair (A's messages to B on A's stream, B's to A on
  B's): ``RaftPeer/Stream`` answers with ``RaftAck``, not batches, and neither side has to
  decide who dials. Everything one node sends another in one event loop turn, for all groups,
  is one ``RaftBatch`` (a unary RPC per message costs ~0.3 ms of CPU; a batch of 64 messages
  costs ~8-13 us of CPU per message, both ends, see ``scripts/bench_transport.py``).
- Loss over blocking: ``send()`` never waits. Each peer has a bounded queue that drops its
  oldest batches when the peer is slow or down; Raft retransmits. A write that failed is
  retried first on the next connection, so a peer may (rarely) see a batch twice.
- Acks are sparse (first batch of a stream, then every ``servicer.ACK_EVERY``): the first
  proves the connection and resets the backoff; the sender never waits for them.
- Unreachable peers are reported, not raised: ``on_unreachable(node_id)`` once per failed
  connection attempt; attempts back off exponentially with jitter (50 ms to 2 s by default).

What the node runtime must do:

- register ``transport.servicer()`` on its ``grpc.aio`` server created with
  ``SERVER_OPTIONS`` (message size limits and keepalive permits), ``await start()`` and, on
  shutdown, ``await stop()`` before stopping the server;
- call ``set_peer`` / ``remove_peer`` as node addresses change in the meta group;
- call ``RawNode.report_unreachable(node_id)`` for its groups from ``on_unreachable``;
- report snapshot sends itself: the transport does not say whether a ``SNAP`` message arrived.
  Reporting success right after ``send()`` is safe (the leader probes next, and a lost
  snapshot is simply sent again once the follower answers a heartbeat).
"""

from kvcluster.transport.backoff import Backoff, BackoffPolicy
from kvcluster.transport.base import OnMessages, OnUnreachable, Outbox, Transport
from kvcluster.transport.codec import WIRE_VERSION, decode_message, encode_message
from kvcluster.transport.errors import CodecError, TransportError
from kvcluster.transport.grpc_transport import (
    SERVER_OPTIONS,
    GrpcTransport,
    GrpcTransportConfig,
    PeerStatus,
)
from kvcluster.transport.metrics import BATCH_SIZE_BUCKETS, TransportMetrics
from kvcluster.transport.servicer import RaftPeerService

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "SERVER_OPTIONS",
    "WIRE_VERSION",
    "Backoff",
    "BackoffPolicy",
    "CodecError",
    "GrpcTransport",
    "GrpcTransportConfig",
    "OnMessages",
    "OnUnreachable",
    "Outbox",
    "PeerStatus",
    "RaftPeerService",
    "Transport",
    "TransportError",
    "TransportMetrics",
    "decode_message",
    "encode_message",
]
