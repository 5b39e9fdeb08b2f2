"""Counters of a transport, as plain attributes.

Contract:
- Only counters that grow and one histogram: the node runtime reads them and exports them in
  Prometheus text format (``*_total`` counters, ``batch_size`` histogram). Nothing here does
  I/O or formats text.
- "messages" are Raft messages, "batches" are ``RaftBatch``es (all the messages for one peer
  that accumulated in one loop turn, cut at ``max_batch_bytes``), "bytes" are payload bytes
  (encoded Raft messages, without the batch framing).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field, fields

__all__ = ["BATCH_SIZE_BUCKETS", "TransportMetrics"]

BATCH_SIZE_BUCKETS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
"""Upper bounds (messages per batch) of the batch size histogram; +Inf is implied."""


@dataclass(slots=True)
class TransportMetrics:
    # Outbound.
    messages_sent: int = 0  # messages written to a peer's stream
    batches_sent: int = 0
    bytes_sent: int = 0
    drops: int = 0  # messages dropped: queue overflow, removed peer, stopped transport
    batches_dropped: int = 0
    dropped_no_peer: int = 0  # messages for a node with no address (set_peer not called)
    oversized_messages: int = 0  # messages larger than the gRPC message limit (dropped)
    reconnects: int = 0  # connection attempts after the first, over all peers
    unreachable_reports: int = 0  # on_unreachable calls
    # Inbound.
    batches_received: int = 0
    messages_received: int = 0
    bytes_received: int = 0
    malformed_messages: int = 0  # payloads that did not decode (skipped)
    refused_streams: int = 0  # wrong cluster_id / to_node / from_node: stream closed
    callback_errors: int = 0  # on_messages / on_unreachable raised (logged, ignored)
    # Histogram of messages per sent batch: counts per bucket (not cumulative), +Inf last.
    batch_size_counts: list[int] = field(
        default_factory=lambda: [0] * (len(BATCH_SIZE_BUCKETS) + 1)
    )

    def observe_batch_size(self, n: int) -> None:
        self.batch_size_counts[bisect_left(BATCH_SIZE_BUCKETS, n)] += 1

    def batch_size_histogram(self) -> list[tuple[float, int]]:
        """Cumulative ``(le, count)`` pairs as Prometheus wants them; the last ``le`` is inf."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, count in zip(
            (*BATCH_SIZE_BUCKETS, float("inf")), self.batch_size_counts, strict=True
        ):
            total += count
            out.append((float(bound), total))
        return out

    def counters(self) -> dict[str, int]:
        """Every counter by name (the histogram excluded)."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if f.name != "batch_size_counts"
        }
