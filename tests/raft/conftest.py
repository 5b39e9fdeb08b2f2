"""Helpers shared by the Raft tests: a small simulated group with calm defaults (no pre-vote,
no check-quorum, no unreachable reports) and a scripted election."""

from __future__ import annotations

import random
from typing import Any

from kvcluster.raft import StateRole
from kvcluster.testing.cluster import Cluster, ClusterConfig, SimNode

ELECTION = 5


def make(nodes: int, **knobs: Any) -> Cluster:
    cfg = ClusterConfig(
        nodes=nodes,
        election_tick=ELECTION,
        heartbeat_tick=1,
        pre_vote=False,
        check_quorum=False,
        unreachable_rate=0.0,
        **knobs,
    )
    return Cluster(cfg, random.Random(0))


def elect(c: Cluster, node_id: int) -> SimNode:
    n = c.nodes[node_id]
    assert n.raw is not None
    n.raw.campaign()
    c.settle()
    assert n.role() == StateRole.LEADER
    return n
