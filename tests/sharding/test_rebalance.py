"""The planning behind kvctl reshard and rebalance: which slots move where."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvcluster.errors import InvalidArgument
from kvcluster.sharding import SLOT_COUNT, plan_rebalance, plan_reshard


def even(groups: int) -> dict[int, int]:
    """Slots spread in contiguous ranges over groups 1..groups."""
    per = SLOT_COUNT // groups
    return {s: min(s // per, groups - 1) + 1 for s in range(SLOT_COUNT)}


def after(owners: dict[int, int], moves: list[tuple[int, int]]) -> dict[int, int]:
    new = dict(owners)
    for s, g in moves:
        new[s] = g
    return new


def test_explicit_slots_skip_those_already_at_the_target() -> None:
    owners = even(3)
    moves = plan_reshard(owners, [1, 2, 3], 2, slots=range(5455, 5470))
    assert moves == [(s, 2) for s in range(5455, 5461)]


def test_count_from_a_source_takes_the_top_of_its_slots() -> None:
    owners = even(3)
    moves = plan_reshard(owners, [1, 2, 3], 3, count=100, source=1)
    assert moves == [(s, 3) for s in range(5361, 5461)]


def test_count_without_a_source_takes_from_every_other_group_in_proportion() -> None:
    owners = even(4)
    moves = plan_reshard(owners, [1, 2, 3, 4], 4, count=300)
    taken = Counter(owners[s] for s, _ in moves)
    assert sum(taken.values()) == 300 and set(taken) == {1, 2, 3}
    assert max(taken.values()) - min(taken.values()) <= 1


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"slots": [1], "count": 1}, "either"),
        ({}, "either"),
        ({"count": 0}, "at least 1"),
        ({"count": 10, "source": 9}, "unknown source"),
        ({"count": 10, "source": 2}, "same group"),
        ({"count": 99999, "source": 1}, "fewer than"),
        ({"slots": [16384]}, "out of range"),
    ],
)
def test_bad_requests_are_refused_with_the_reason(kw: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        plan_reshard(even(3), [1, 2, 3], 2, **kw)  # type: ignore[arg-type]


def test_unknown_target_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="unknown target"):
        plan_reshard(even(3), [1, 2, 3], 7, count=1)


@given(st.integers(1, 8), st.integers(0, 7))
def test_rebalance_by_count_leaves_every_group_within_one_slot(n: int, new_groups: int) -> None:
    owners = even(n)
    groups = list(range(1, n + new_groups + 1))
    moves = plan_rebalance(owners, groups)
    counts = Counter(after(owners, moves).values())
    sizes = [counts.get(g, 0) for g in groups]
    assert max(sizes) - min(sizes) <= 1
    assert all(owners[s] != g for s, g in moves), "no slot moves to its own group"
    assert len({s for s, _ in moves}) == len(moves)


def test_rebalance_of_a_balanced_cluster_moves_nothing() -> None:
    assert plan_rebalance(even(4), [1, 2, 3, 4]) == []


def test_rebalance_by_weight_evens_out_the_load() -> None:
    owners = even(2)
    weights = {s: (10.0 if owners[s] == 1 else 1.0) for s in owners}  # group 1 is hot
    moves = plan_rebalance(owners, [1, 2], weights)
    load = Counter[int]()
    for s, g in after(owners, moves).items():
        load[g] += int(weights[s])
    before = abs(sum(w for s, w in weights.items() if owners[s] == 1) - 8192)
    assert abs(load[1] - load[2]) < before / 100
    assert all(owners[s] == 1 and g == 2 for s, g in moves)


def test_a_plan_is_deterministic() -> None:
    owners = even(3)
    assert plan_rebalance(owners, [1, 2, 3, 4]) == plan_rebalance(owners, [1, 2, 3, 4])
