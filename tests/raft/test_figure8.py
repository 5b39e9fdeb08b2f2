"""Figure 8 of the Raft paper: a leader commits only entries of its own term by counting.

S1 (term 2) placed index 2 on S2; S5 (term 3) wrote a different index 2 on itself only. In
term 4, S1 copies its term-2 entry to S3, so it is on a majority (S1, S2, S3) — yet it must
not be committed: if S1 then fails, S5 can still win and overwrite index 2 everywhere. Only
once S1 commits an entry of term 4 on a majority is index 2 safe.
"""

from __future__ import annotations

from kvcluster.raft import MessageType, StateRole
from kvcluster.testing.interaction import InteractionEnv


def _setup() -> InteractionEnv:
    env = InteractionEnv()
    # One entry per AppendEntries so the scenario can be stepped entry by entry.
    env.run("add-nodes 5 voters=1,2,3,4,5 maxsize=1")
    env.run("set-log 1 terms=1,2 term=3")  # (c): S1 will campaign for term 4
    env.run("set-log 2 terms=1,2 term=2")
    env.run("set-log 3 terms=1 term=3")
    env.run("set-log 4 terms=1 term=3")
    env.run("set-log 5 terms=1,3 term=3")
    for n in env.nodes.values():  # index 1 was committed in term 1
        st = n.storage
        hs = st.hard_state
        hs.commit = 1
        st.set_hard_state(hs)
        n.raw = env._new_raw(n)
    env.run("partition 1 2 3 | 4 5")
    env.run("campaign 1")
    env.run("process-ready 1")
    env.run("deliver-msgs 2 3")
    env.run("process-ready 2 3")
    env.run("deliver-msgs 1")
    assert env.raw(1).status().role == StateRole.LEADER
    assert env.raw(1).status().term == 4
    # S1 appends its term-4 no-op at index 3 and sends it; S2 takes it, S3 rejects (short).
    env.run("process-ready 1")
    env.run("deliver-msgs 2 3")
    env.run("process-ready 2 3")
    env.run("deliver-msgs 1")
    # S1 now sends S3 only index 2 (term 2); S3 acknowledges it.
    env.run("process-ready 1")
    env.run("deliver-msgs 3")
    env.run("process-ready 3")
    env.run("deliver-msgs 1")
    return env


def _terms(env: InteractionEnv, node_id: int) -> list[int]:
    return [e.term for e in env.raw(node_id).raft.log.all_entries()]


def test_entry_of_older_term_on_a_majority_is_not_committed() -> None:
    env = _setup()
    # Index 2 (term 2) is on S1, S2 and S3 — a majority of five — and the leader knows it.
    s1 = env.raw(1).status()
    assert s1.progress[2].match_index >= 2 and s1.progress[3].match_index == 2
    assert s1.commit == 1, "an entry of an earlier term must not be committed by counting"

    # (d) S1 fails before index 3 reaches S3. S5 can win and overwrite index 2 everywhere.
    env.run("crash 1")
    env.inbox.clear()
    env.run("heal")
    env.run("campaign 5")  # term 4 is taken (S2, S3 voted for S1): it will lose
    env.run("stabilize 2 3 4 5")
    if env.raw(5).status().role != StateRole.LEADER:
        env.run("campaign 5")
        env.run("stabilize 2 3 4 5")
    assert env.raw(5).status().role == StateRole.LEADER
    env.run("propose 5 after")
    env.run("stabilize 2 3 4 5")
    for node_id in (2, 3, 4, 5):
        assert _terms(env, node_id)[:2] == [1, 3], f"S{node_id} kept the uncommitted entry"
        applied = env.nodes[node_id].applied
        assert all(not (e.index == 2 and e.term == 2) for e in applied)


def test_entry_of_current_term_on_a_majority_commits_the_older_one() -> None:
    env = _setup()
    # (e) S1 gets its term-4 entry onto S3 as well: index 3 is on a majority, which commits
    # index 2 with it. S5 can no longer win.
    env.run("process-ready 1")
    env.run("deliver-msgs 3")
    env.run("process-ready 3")
    env.run("deliver-msgs 1")
    assert env.raw(1).status().commit == 3
    env.run("process-ready 1")  # S1 applies indices 2 and 3
    assert [(e.term, e.index) for e in env.nodes[1].applied] == [(1, 1), (2, 2), (4, 3)]

    env.run("crash 1")
    env.inbox.clear()
    env.run("heal")
    for _ in range(3):
        env.run("campaign 5")
        env.run("stabilize 2 3 4 5")
        assert env.raw(5).status().role != StateRole.LEADER
    rejections = [
        m for m in env.delivered if m.type == MessageType.VOTE_RESP and m.to == 5 and m.reject
    ]
    assert {m.from_ for m in rejections} >= {2, 3}
