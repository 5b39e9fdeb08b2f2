"""The node's Prometheus metrics, one registry per node (so tests can host several nodes).

Contract: only counters, gauges and histograms live here, named ``kvcluster_*``; the runtime
updates them, ``kvcluster/node/http.py`` renders them. prometheus_client does the exposition
format (a well-kept library; writing the text format by hand would be a liability).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["NodeMetrics"]

_LATENCY = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class NodeMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.proposals = Counter(
            "kvcluster_proposals", "Commands proposed to Raft", ["group"], registry=r
        )
        self.applied = Counter(
            "kvcluster_applied_entries", "Log entries applied", ["group"], registry=r
        )
        self.reads = Counter(
            "kvcluster_reads", "Reads served", ["group", "consistency"], registry=r
        )
        self.commit_index = Gauge(
            "kvcluster_commit_index", "Raft commit index", ["group"], registry=r
        )
        self.apply_lag = Gauge(
            "kvcluster_apply_lag", "Committed but not yet applied entries", ["group"], registry=r
        )
        self.is_leader = Gauge("kvcluster_is_leader", "1 if leader", ["group"], registry=r)
        self.expired_keys = Counter(
            "kvcluster_expired_keys_deleted",
            "expired keys deleted by active expiry (counted on the leader that proposed them)",
            ["group"],
            registry=r,
        )
        self.log_first_index = Gauge(
            "kvcluster_raft_log_first_index",
            "first index still in the log (compaction dropped the ones before)",
            ["group"],
            registry=r,
        )
        self.fsync_seconds = Histogram(
            "kvcluster_persist_seconds",
            "Time to write and sync one Ready batch (all groups)",
            buckets=_LATENCY,
            registry=r,
        )
        self.apply_seconds = Histogram(
            "kvcluster_apply_seconds", "Time to apply one batch", buckets=_LATENCY, registry=r
        )
        self.rpc_seconds = Histogram(
            "kvcluster_rpc_seconds", "Client RPC latency", ["rpc"], buckets=_LATENCY, registry=r
        )
        self.ready_entries = Histogram(
            "kvcluster_ready_entries",
            "Entries persisted per Ready batch",
            buckets=_SIZES,
            registry=r,
        )
        self.client_batch = Histogram(
            "kvcluster_client_batch_commands",
            "Commands per client batch request",
            buckets=_SIZES,
            registry=r,
        )
        self.raft_messages = Counter(
            "kvcluster_raft_messages_sent", "Raft messages handed to the transport", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
