"""The simulation harness itself: it is deterministic, and its checker has teeth.

- The same seed gives the same run, line for line.
- Each invariant of ``kvcluster.testing.invariants`` fires on a hand-made violation.
- Mutants: the core with one safety rule deliberately broken (monkeypatched for the test) is
  caught by a safety invariant within the first 200 seeds of the sweep. A sweep that never
  fails proves nothing unless it can fail. (Committing earlier-term entries by counting,
  Figure 8, needs three leaders' histories to interleave just so: the sweep catches it only
  a few times per thousand seeds, so test_figure8.py's script is its guard.)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest

from kvcluster.raft import Entry, HardState, ReadState, StateRole
from kvcluster.raft.log import RaftLog
from kvcluster.raft.read_only import ReadOnly, ReadRequest
from kvcluster.testing.cluster import Cluster, ClusterConfig, SimNode
from kvcluster.testing.invariants import Checker, InvariantViolation
from kvcluster.testing.replay import SimulationFailure, run_seed


def trace_of(seed: int) -> list[str]:
    lines: list[str] = []
    run_seed(seed, lines.append, steps=300)
    return lines


@pytest.mark.parametrize("seed", [3, 11])
def test_same_seed_same_run(seed: int) -> None:
    first = trace_of(seed)
    assert len(first) > 300
    assert first == trace_of(seed)


def cluster3() -> tuple[Cluster, SimNode]:
    c = Cluster(ClusterConfig(nodes=3, pre_vote=False), random.Random(1))
    leader = c.nodes[1]
    assert leader.raw is not None
    leader.raw.campaign()
    c.settle()
    c.propose(leader, 3)
    c.settle()
    c.check()
    return c, leader


def test_checker_election_safety() -> None:
    c, leader = cluster3()
    assert leader.raw is not None
    other = c.nodes[2].raw
    assert other is not None
    other.raft.role = StateRole.LEADER  # a second leader in the same term
    with pytest.raises(InvariantViolation, match="election safety"):
        c.check()


def test_checker_log_matching() -> None:
    c, _ = cluster3()
    st = c.nodes[3].storage
    e = st.entries(2, 3, 1 << 30)[0]
    st.append([e._replace(data=b"forged")])
    with pytest.raises(InvariantViolation, match="log matching"):
        c.checker.check_final(c.nodes.values())


def test_checker_state_machine_safety() -> None:
    chk = Checker()
    chk.on_apply(1, 0, Entry(1, 1, data=b"a"), b"d1")
    with pytest.raises(InvariantViolation, match="state machine safety"):
        chk.on_apply(2, 0, Entry(1, 1, data=b"b"), b"d2")


def test_checker_apply_order_and_exactly_once() -> None:
    chk = Checker()
    chk.on_apply(1, 0, Entry(1, 1, data=b"a"), b"d1")
    with pytest.raises(InvariantViolation, match="right after"):
        chk.on_apply(1, 0, Entry(1, 2, data=b"b"), b"d2")
    with pytest.raises(InvariantViolation, match="applied at index 1 and again"):
        chk.on_apply(1, 1, Entry(1, 2, data=b"a"), b"d2")


def test_checker_durability() -> None:
    chk = Checker()
    with pytest.raises(InvariantViolation, match="voted for 2 and then 3"):
        chk.on_persist_hard_state(1, HardState(4, 2, 0), HardState(4, 3, 0), 10)
    with pytest.raises(InvariantViolation, match="persisted term"):
        chk.on_persist_hard_state(1, HardState(4, 2, 0), HardState(3, 0, 0), 10)
    with pytest.raises(InvariantViolation, match="beyond its persisted log"):
        chk.on_persist_hard_state(1, HardState(4, 2, 0), HardState(4, 2, 11), 10)


def test_checker_linearizable_read() -> None:
    chk = Checker()
    chk.on_read_request(b"r1", 7)
    chk.on_read_state(1, ReadState(7, b"r1"))
    with pytest.raises(InvariantViolation, match="linearizability"):
        chk.on_read_state(2, ReadState(6, b"r1"))


def test_checker_leader_completeness() -> None:
    c, leader = cluster3()
    assert leader.raw is not None
    committed = leader.raw.raft.log.committed
    assert committed >= 4
    # Node 3 "wins" a later term with a log missing the committed tail.
    r = c.nodes[3].raw
    assert r is not None
    r.raft.log.unstable.truncate_and_append([Entry(r.raft.term, committed - 1)])
    r.raft.term += 1
    r.raft.role = StateRole.LEADER
    with pytest.raises(InvariantViolation, match=r"leader completeness|log matching"):
        c.check()


# -- mutants of the core --------------------------------------------------------------------


def _vote_for_anyone(self: RaftLog, last_index: int, term: int) -> bool:
    return True  # forgets the election restriction (paper §5.4.1)


def _release_at_once(
    self: ReadOnly, voters: set[int], self_id: int, quorum: int
) -> list[ReadRequest]:
    out: list[ReadRequest] = []  # serves reads without a quorum confirming leadership
    while self.queue and self.queue[0].seq:
        out.append(self.queue.popleft())
    return out


MUTANTS: dict[str, tuple[type, str, Callable[..., object]]] = {
    "vote-for-stale-logs": (RaftLog, "is_up_to_date", _vote_for_anyone),
    "reads-without-leadership-check": (ReadOnly, "release", _release_at_once),
}


@pytest.fixture(params=sorted(MUTANTS))
def mutant(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    owner, name, impl = MUTANTS[request.param]
    monkeypatch.setattr(owner, name, impl)
    yield request.param


def test_sweep_catches_mutant(mutant: str) -> None:
    for seed in range(200):
        try:
            run_seed(seed)
        except SimulationFailure as e:
            if "liveness" not in str(e.cause):  # a safety property must be what fails
                return
    pytest.fail(f"200 seeds did not notice the mutant {mutant!r}")
