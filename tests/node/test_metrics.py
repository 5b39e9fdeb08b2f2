"""NodeMetrics: per-group series bound once, rendered under the group's label."""

from __future__ import annotations

from kvcluster.node.metrics import NodeMetrics


def test_group_series_are_bound_once_and_rendered_with_their_label() -> None:
    m = NodeMetrics()
    g3 = m.group(3)
    assert m.group(3) is g3 and m.group(4) is not g3
    g3.proposals.inc(5)
    g3.log_first_index.set(42)
    m.group(4).proposals.inc(1)
    text = m.render().decode()
    assert 'kvcluster_proposals_total{group="3"} 5.0' in text
    assert 'kvcluster_proposals_total{group="4"} 1.0' in text
    assert 'kvcluster_raft_log_first_index{group="3"} 42.0' in text


def test_read_counters_are_bound_per_level_on_first_use() -> None:
    m = NodeMetrics()
    g = m.group(2)
    assert g.reads("stale") is g.reads("stale")
    g.reads("stale").inc(3)
    g.reads("linearizable").inc()
    m.execute_seconds.observe(0.001)
    text = m.render().decode()
    assert 'kvcluster_reads_total{consistency="stale",group="2"} 3.0' in text
    assert 'kvcluster_reads_total{consistency="linearizable",group="2"} 1.0' in text
    assert "unsafe_stale" not in text  # a level never used shows no series
    assert 'kvcluster_rpc_seconds_count{rpc="execute"} 1.0' in text
