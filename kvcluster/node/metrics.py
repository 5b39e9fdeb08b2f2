"""The node's Prometheus metrics, one registry per node (so tests can host several nodes).

Contract: only counters, gauges and histograms live here, named ``kvcluster_*``; the runtime
updates them, ``kvcluster/node/http.py`` renders them. prometheus_client does the exposition
format (a well-kept library; writing the text format by hand would be a liability).
Series updated on every Ready or request are bound once (per group: ``NodeMetrics.group``;
reads per consistency level on first use): a ``labels()`` lookup costs ~2 us, a bound
update ~0.5 us.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["GroupMetrics", "NodeMetrics"]

_LATENCY = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True, slots=True)
class GroupMetrics:
    """One group's series of the per-group metrics below, bound to its label."""

    proposals: Counter
    applied: Counter
    commit_index: Gauge
    apply_lag: Gauge
    is_leader: Gauge
    log_first_index: Gauge
    expired_keys: Counter
    label: str
    reads_of: Counter  # the labelled parent: consistency levels are bound on first use
    _reads: dict[str, Counter] = field(default_factory=dict)

    def reads(self, consistency: str) -> Counter:
        """The group's read counter for one consistency level."""
        bound = self._reads.get(consistency)
        if bound is None:
            bound = self._reads[consistency] = self.reads_of.labels(
                group=self.label, consistency=consistency
            )
        return bound


class NodeMetrics:
    def __init__(self) -> None:
        self._groups: dict[int, GroupMetrics] = {}
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
        self.persist_seconds = Histogram(
            "kvcluster_persist_seconds",
            "Time to write, apply and sync one Ready batch (all groups): one transaction",
            buckets=_LATENCY,
            registry=r,
        )
        self.apply_seconds = Histogram(
            "kvcluster_apply_seconds",
            "Time to apply the committed entries of one Ready batch (all groups; part of "
            "kvcluster_persist_seconds)",
            buckets=_LATENCY,
            registry=r,
        )
        self.rpc_seconds = Histogram(
            "kvcluster_rpc_seconds", "Client RPC latency", ["rpc"], buckets=_LATENCY, registry=r
        )
        self.execute_seconds = self.rpc_seconds.labels(rpc="execute")  # every client batch
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

    def group(self, gid: int) -> GroupMetrics:
        """The series of group ``gid`` (bound on first use)."""
        gm = self._groups.get(gid)
        if gm is None:
            label = str(gid)
            gm = self._groups[gid] = GroupMetrics(
                proposals=self.proposals.labels(group=label),
                applied=self.applied.labels(group=label),
                commit_index=self.commit_index.labels(group=label),
                apply_lag=self.apply_lag.labels(group=label),
                is_leader=self.is_leader.labels(group=label),
                log_first_index=self.log_first_index.labels(group=label),
                expired_keys=self.expired_keys.labels(group=label),
                label=label,
                reads_of=self.reads,
            )
        return gm

    def render(self) -> bytes:
        return generate_latest(self.registry)
