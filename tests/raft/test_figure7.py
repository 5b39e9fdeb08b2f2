"""Figure 7 of the Raft paper: every follower log converges to the leader's, both ways.

The leader of term 8 holds ``1 1 1 4 4 5 5 6 6 6`` and appends its term-8 entry. Followers
(a)-(f) hold the logs below. With the textbook decrement-and-retry the leader backs
``next_index`` off one entry per rejected AppendEntries; with the conflict-term fast backup
the follower names its conflicting term and that term's first index, so the leader skips a
whole term per round trip. The counts of rejected round trips are exact and checked.
"""

from __future__ import annotations

import pytest

from kvcluster.raft import MessageType, StateRole
from kvcluster.testing.interaction import InteractionEnv

LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FOLLOWERS = {
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 1, 4],
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 1, 4, 4, 4, 4],
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}
# Rejected AppendEntries before the follower's log matched, derived by hand from the paper.
TEXTBOOK_REJECTIONS = {"a": 1, "b": 6, "c": 0, "d": 0, "e": 5, "f": 7}
FAST_REJECTIONS = {"a": 1, "b": 1, "c": 0, "d": 0, "e": 2, "f": 2}


def converge(follower: list[int], fast: bool) -> tuple[list[int], list[int], int]:
    """Returns (leader log terms, follower log terms, rejected round trips)."""
    env = InteractionEnv()
    env.run(f"add-nodes 3 voters=1,2,3 fastbacktrack={fast}")
    terms = ",".join(map(str, LEADER))
    env.run(f"set-log 1 terms={terms} term=7")
    env.run(f"set-log 3 terms={terms} term=7")  # a voter that lets node 1 win term 8
    env.run(f"set-log 2 terms={','.join(map(str, follower))} term={max(follower)}")
    env.run("partition 1 3 | 2")
    env.run("campaign 1")
    env.run("stabilize")
    assert env.raw(1).status().role == StateRole.LEADER
    assert env.raw(1).status().term == 8
    env.run("heal")
    env.delivered.clear()
    env.run("tick 1")  # a heartbeat un-pauses the probe of node 2
    env.run("stabilize")
    rejections = sum(
        1
        for m in env.delivered
        if m.type == MessageType.APP_RESP and m.from_ == 2 and m.to == 1 and m.reject
    )

    def log_terms(node_id: int) -> list[int]:
        return [e.term for e in env.raw(node_id).raft.log.all_entries()]

    return log_terms(1), log_terms(2), rejections


@pytest.mark.parametrize("name", sorted(FOLLOWERS))
@pytest.mark.parametrize("fast", [False, True], ids=["textbook", "fast"])
def test_follower_converges_to_leader(name: str, fast: bool) -> None:
    leader, follower, rejections = converge(FOLLOWERS[name], fast)
    assert leader == [*LEADER, 8]
    assert follower == leader, f"follower ({name}) did not converge"
    expected = (FAST_REJECTIONS if fast else TEXTBOOK_REJECTIONS)[name]
    assert rejections == expected, f"({name}) {rejections} rejected round trips"


def test_fast_backup_needs_fewer_round_trips_for_b_e_f() -> None:
    for name in ("b", "e", "f"):
        assert converge(FOLLOWERS[name], True)[2] < converge(FOLLOWERS[name], False)[2]
