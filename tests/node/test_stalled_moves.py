"""Which decided slot moves the meta leader's node finishes itself (``StalledMoves.check``).

A move is stalled when it is decided (FROZEN or later, not DONE) and its phase has not
changed for ``stall_s`` seconds while this node led the meta group. Each stall is reported
once; undecided moves (PENDING, COPYING, ABORTED) are never reported: they are the
operator's.
"""

from __future__ import annotations

from kvcluster.node.stalled_moves import StalledMoves
from kvcluster.sharding.migration import Phase

P = Phase


def test_a_decided_move_that_stays_put_is_reported_once_per_stall() -> None:
    w = StalledMoves(10.0)
    assert w.check({1: P.FROZEN}, True, 100.0) == frozenset()
    assert w.check({1: P.FROZEN}, True, 109.9) == frozenset()
    assert w.check({1: P.FROZEN}, True, 110.0) == {1}
    assert w.check({1: P.FROZEN}, True, 115.0) == frozenset()  # being finished: wait again
    assert w.check({1: P.FROZEN}, True, 120.0) == {1}  # the try failed: try again


def test_progress_restarts_the_clock() -> None:
    w = StalledMoves(10.0)
    w.check({1: P.FROZEN}, True, 100.0)
    assert w.check({1: P.OWNERSHIP_FLIPPED}, True, 108.0) == frozenset()
    assert w.check({1: P.OWNERSHIP_FLIPPED}, True, 117.0) == frozenset()
    assert w.check({1: P.SOURCE_RELEASED}, True, 118.0) == frozenset()
    assert w.check({1: P.SOURCE_RELEASED}, True, 128.0) == {1}


def test_undecided_and_finished_moves_are_never_reported() -> None:
    w = StalledMoves(1.0)
    phases = {1: P.PENDING, 2: P.COPYING, 3: P.ABORTED, 4: P.DONE, 5: P.FROZEN}
    w.check(phases, True, 0.0)
    assert w.check(phases, True, 50.0) == {5}


def test_only_the_meta_leader_reports_and_a_new_leader_starts_its_own_clock() -> None:
    w = StalledMoves(10.0)
    w.check({1: P.FROZEN}, True, 100.0)
    assert w.check({1: P.FROZEN}, False, 111.0) == frozenset()  # lost the lead
    assert w.check({1: P.FROZEN}, True, 112.0) == frozenset()  # leads again: from now
    assert w.check({1: P.FROZEN}, True, 122.0) == {1}


def test_zero_disables() -> None:
    w = StalledMoves(0.0)
    assert w.check({1: P.FROZEN}, True, 0.0) == frozenset()
    assert w.check({1: P.FROZEN}, True, 1e9) == frozenset()
