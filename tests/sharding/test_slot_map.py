"""The slot map: building, even spreading, ranges, changes, serialisation and validation."""

from __future__ import annotations

import copy
import itertools
import json
import pickle
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcluster.errors import InvalidArgument
from kvcluster.sharding import MAX_GROUP_ID, SLOT_COUNT, GroupInfo, SlotMap

LAST = SLOT_COUNT - 1


def three_groups() -> list[GroupInfo]:
    return [
        GroupInfo(g, tuple(f"10.0.0.{n}:700{g}" for n in (1, 2, 3)), leader=f"10.0.0.{g}:700{g}")
        for g in (1, 2, 3)
    ]


# --- building and reading ---------------------------------------------------------------


def test_empty_map_owns_nothing() -> None:
    m = SlotMap()
    assert m.epoch == 0
    assert m.owner(0) is None and m.owner(LAST) is None
    assert m.ranges() == []
    assert m.slots_of(None) == [(0, LAST)]
    assert not m.is_complete()
    assert m.slot_counts() == {}


def test_build_from_ranges() -> None:
    m = SlotMap(epoch=7, ranges=[(100, 199, 2), (0, 99, 1), (300, 300, 1)])
    assert m.epoch == 7
    assert [m.owner(s) for s in (0, 99, 100, 199, 200, 299, 300, 301)] == [
        1,
        1,
        2,
        2,
        None,
        None,
        1,
        None,
    ]
    assert m.slots_of(1) == [(0, 99), (300, 300)]
    assert m.slots_of(2) == [(100, 199)]
    assert m.slots_of(3) == []
    assert m.slots_of(None) == [(200, 299), (301, LAST)]
    assert m.ranges() == [(0, 99, 1), (100, 199, 2), (300, 300, 1)]
    assert m.slot_counts() == {1: 101, 2: 100}


def test_adjacent_ranges_of_one_group_merge() -> None:
    m = SlotMap(ranges=[(0, 9, 4), (10, 19, 4)])
    assert m.slots_of(4) == [(0, 19)]


@pytest.mark.parametrize(
    "ranges",
    [
        [(0, 10, 1), (10, 20, 2)],  # overlap
        [(0, 10, 1), (5, 6, 1)],  # overlap, same group
        [(10, 9, 1)],  # end before start
        [(0, SLOT_COUNT, 1)],  # past the last slot
        [(-1, 5, 1)],
        [(0, 5, MAX_GROUP_ID + 1)],  # group id reserved for "unowned"
        [(0, 5, -1)],
        [(0, 5)],  # not a triple
        [(0, 5, 1, 2)],
        [(0, True, 1)],  # bool is not an int here
        [("0", 5, 1)],
        ["0-5"],
        "0-5",
        None,
    ],
)
def test_bad_ranges_are_rejected(ranges: Any) -> None:
    with pytest.raises(InvalidArgument):
        SlotMap(ranges=ranges)


@pytest.mark.parametrize("epoch", [-1, 2**64, True, 1.0, "1", None])
def test_bad_epochs_are_rejected(epoch: Any) -> None:
    with pytest.raises(InvalidArgument):
        SlotMap(epoch=epoch)


@pytest.mark.parametrize("slot", [-1, SLOT_COUNT, True, "1", None, 1.0])
def test_owner_rejects_bad_slots(slot: Any) -> None:
    with pytest.raises(InvalidArgument):
        SlotMap().owner(slot)


# --- even spreading ---------------------------------------------------------------------


def test_even_over_three_groups_matches_redis_cli() -> None:
    m = SlotMap.even([1, 2, 3], epoch=1, groups=three_groups())
    assert m.ranges() == [(0, 5460, 1), (5461, 10922, 2), (10923, 16383, 3)]
    assert m.is_complete()
    assert m.epoch == 1
    assert m.address_of(2) == "10.0.0.2:7002"


@settings(max_examples=60)
@given(st.one_of(st.integers(1, 64), st.integers(1, SLOT_COUNT)), st.integers(0, 2**32))
def test_even_is_contiguous_complete_and_balanced(n: int, seed: int) -> None:
    ids = random.Random(seed).sample(range(MAX_GROUP_ID + 1), n)
    m = SlotMap.even(ids)
    assert m.is_complete()
    ranges = m.ranges()
    assert [g for _, _, g in ranges] == ids  # one range per group, in the order given
    assert ranges[0][0] == 0 and ranges[-1][1] == LAST
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges))
    sizes = [end - start + 1 for start, end, _ in ranges]
    assert max(sizes) - min(sizes) <= 1
    assert sum(sizes) == SLOT_COUNT


@pytest.mark.parametrize("ids", [[], [1, 1], list(range(SLOT_COUNT + 1)), [MAX_GROUP_ID + 1]])
def test_even_rejects_bad_group_lists(ids: list[int]) -> None:
    with pytest.raises(InvalidArgument):
        SlotMap.even(ids)


# --- changes ----------------------------------------------------------------------------


def test_with_assignment_bumps_epoch_and_leaves_the_original_alone() -> None:
    m = SlotMap.even([1, 2, 3], epoch=5)
    m2 = m.with_assignment(range(0, 100), 3)
    assert (m.epoch, m2.epoch) == (5, 6)
    assert m.owner(0) == 1 and m2.owner(0) == 3
    assert m2.slots_of(3) == [(0, 99), (10923, LAST)]
    assert m2.slots_of(1) == [(100, 5460)]
    m3 = m2.with_assignment([5, 7], None)
    assert m3.epoch == 7 and m3.owner(5) is None and m3.owner(6) == 3
    assert not m3.is_complete()
    assert m3.with_assignment([], 1).epoch == 8  # every call is one meta decision


@pytest.mark.parametrize(("slots", "group"), [([SLOT_COUNT], 1), ([0], -1), ([True], 1), (5, 1)])
def test_with_assignment_validates(slots: Any, group: Any) -> None:
    with pytest.raises(InvalidArgument):
        SlotMap().with_assignment(slots, group)


def test_group_changes() -> None:
    m = SlotMap.even([1, 2], groups=three_groups()[:2])
    g3 = GroupInfo(3, ("h:1",))
    m2 = m.with_group(g3)
    assert m2.epoch == 1 and m2.group(3) == g3 and m.group(3) is None
    assert m2.address_of(3) == "h:1"
    m3 = m2.without_group(3)
    assert m3.epoch == 2 and 3 not in m3.groups
    with pytest.raises(InvalidArgument):
        m2.without_group(1)  # still owns slots
    with pytest.raises(InvalidArgument):
        m2.without_group(9)  # unknown
    with pytest.raises(InvalidArgument):
        m.with_group("g3")  # type: ignore[arg-type]


def test_leader_hint_keeps_the_epoch() -> None:
    m = SlotMap.even([1, 2, 3], epoch=4, groups=three_groups())
    m2 = m.with_leader_hint(1, "10.0.0.3:7001")
    assert m2.epoch == 4
    assert m2.address_of(1) == "10.0.0.3:7001" and m.address_of(1) == "10.0.0.1:7001"
    assert m2 != m
    assert m2.with_leader_hint(1, "10.0.0.3:7001") is m2
    assert m2.with_leader_hint(1, None).address_of(1) == "10.0.0.1:7001"  # replica 0
    with pytest.raises(InvalidArgument):
        m.with_leader_hint(1, "elsewhere:1")
    with pytest.raises(InvalidArgument):
        m.with_leader_hint(9, None)


def test_groups_view_is_read_only() -> None:
    m = SlotMap(groups=three_groups())
    with pytest.raises(TypeError):
        m.groups[4] = GroupInfo(4, ("x:1",))  # type: ignore[index]


# --- group info -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"group_id": 1, "replicas": ()},
        {"group_id": 1, "replicas": ("a:1", "a:1")},
        {"group_id": 1, "replicas": ("a:1",), "leader": "b:1"},
        {"group_id": 1, "replicas": ("",)},
        {"group_id": 1, "replicas": (7,)},
        {"group_id": 1, "replicas": "a:1"},
        {"group_id": -1, "replicas": ("a:1",)},
        {"group_id": True, "replicas": ("a:1",)},
    ],
)
def test_bad_group_info(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        GroupInfo(**kwargs)


def test_group_info_accepts_a_list_and_freezes_it() -> None:
    info = GroupInfo(1, ["a:1", "b:1"])  # type: ignore[arg-type]
    assert info.replicas == ("a:1", "b:1") and info.address == "a:1"
    assert hash(info) == hash(GroupInfo(1, ("a:1", "b:1")))


def test_duplicate_group_ids_are_rejected() -> None:
    with pytest.raises(InvalidArgument):
        SlotMap(groups=[GroupInfo(1, ("a:1",)), GroupInfo(1, ("b:1",))])
    with pytest.raises(InvalidArgument):
        SlotMap(groups=[{"id": 1, "replicas": ["a:1"]}])  # type: ignore[list-item]


# --- value semantics and serialisation --------------------------------------------------


def test_equality_and_hash() -> None:
    a = SlotMap.even([1, 2, 3], epoch=2, groups=three_groups())
    b = SlotMap(epoch=2, ranges=a.ranges(), groups=three_groups())
    assert a == b and hash(a) == hash(b)
    assert a != a.with_assignment([0], 1)  # same owners, newer epoch
    assert a != "not a map"
    assert "epoch=2" in repr(a)


def test_to_dict_shape() -> None:
    m = SlotMap(epoch=3, ranges=[(0, 9, 1)], groups=[GroupInfo(1, ("a:1", "b:1"), "b:1")])
    assert m.to_dict() == {
        "format": 1,
        "epoch": 3,
        "slots": [[0, 9, 1]],
        "groups": [{"id": 1, "replicas": ["a:1", "b:1"], "leader": "b:1"}],
    }


group_infos = st.builds(
    lambda gid, replicas, pick: GroupInfo(gid, tuple(replicas), pick.choice([None, *replicas])),
    st.integers(0, MAX_GROUP_ID),
    st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=5, unique=True),
    st.randoms(),
)


@st.composite
def slot_maps(draw: st.DrawFn) -> SlotMap:
    groups = draw(st.lists(group_infos, max_size=4, unique_by=lambda g: g.group_id))
    ids = [g.group_id for g in groups] or [draw(st.integers(0, MAX_GROUP_ID))]
    m = SlotMap.even(ids[: draw(st.integers(1, len(ids)))], groups=groups)
    for _ in range(draw(st.integers(0, 4))):
        start = draw(st.integers(0, LAST))
        end = draw(st.integers(start, min(LAST, start + 3000)))
        m = m.with_assignment(range(start, end + 1), draw(st.sampled_from([*ids, None])))
    return m


@settings(max_examples=40)
@given(slot_maps())
def test_ranges_round_trip(m: SlotMap) -> None:
    rebuilt = SlotMap(epoch=m.epoch, ranges=m.ranges(), groups=m.groups.values())
    assert rebuilt == m
    covered = sum(e - s + 1 for s, e, _ in m.ranges()) + sum(e - s + 1 for s, e in m.slots_of(None))
    assert covered == SLOT_COUNT
    for start, end, group in m.ranges():
        assert m.owner(start) == m.owner(end) == group
        assert (start, end) in m.slots_of(group)


@settings(max_examples=40)
@given(slot_maps())
def test_serialisation_round_trips_through_json(m: SlotMap) -> None:
    data = json.loads(json.dumps(m.to_dict()))
    assert SlotMap.from_dict(data) == m
    assert SlotMap.from_dict(m.to_dict()) == m


def good_dict() -> dict[str, Any]:
    return SlotMap.even([1, 2], epoch=9, groups=three_groups()[:2]).to_dict()


def _set(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    d = good_dict()
    target: Any = d
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return d


def _drop(key: str) -> dict[str, Any]:
    d = good_dict()
    del d[key]
    return d


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        "map",
        _drop("epoch"),
        _drop("slots"),
        _drop("groups"),
        _drop("format"),
        {**good_dict(), "extra": 1},
        _set(("format",), 2),
        _set(("epoch",), -1),
        _set(("epoch",), "9"),
        _set(("slots",), {"0": 1}),
        _set(("slots", 0), [0, 8191]),
        _set(("slots", 0), [0, 9000, 1]),  # overlaps the next range
        _set(("slots", 0), [0, 8191, "1"]),
        _set(("slots", 0), "0-8191"),
        _set(("groups",), {}),
        _set(("groups", 0), {"id": 1}),
        _set(("groups", 0, "replicas"), []),
        _set(("groups", 0, "replicas"), "a:1"),
        _set(("groups", 0, "leader"), "nobody:1"),
        _set(("groups", 0, "leader"), 5),
        _set(("groups", 0, "id"), 2),  # two groups with id 2
        _set(("groups", 0, "colour"), "red"),
    ],
)
def test_from_dict_rejects_malformed_input(data: Any) -> None:
    with pytest.raises(InvalidArgument):
        SlotMap.from_dict(data)


def test_from_dict_accepts_tuples_as_lists() -> None:
    d = good_dict()
    d["slots"] = tuple(tuple(r) for r in d["slots"])
    assert SlotMap.from_dict(d) == SlotMap.from_dict(good_dict())


def test_copy_and_pickle() -> None:
    m = SlotMap.even([1, 2, 3], epoch=4, groups=three_groups()).with_assignment([9], None)
    assert copy.deepcopy(m) == m
    assert pickle.loads(pickle.dumps(m)) == m
