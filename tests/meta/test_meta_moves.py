"""The meta group's side of slot migration: planning moves, advancing them phase by phase
(owners flip exactly once, at OWNERSHIP_FLIPPED), aborting and forgetting them, adding and
removing shard groups, and the layout's JSON form. ``change`` is a pure function of state
and command; ``MetaStateMachine.apply`` answers a refused command with ok=False and its
reason and leaves the stored layout alone."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcluster.errors import InvalidArgument
from kvcluster.kv import MemoryKvView
from kvcluster.meta import (
    AbortMove,
    AddGroup,
    AdvanceMove,
    Bootstrap,
    ForgetMove,
    MetaResult,
    MetaState,
    MetaStateMachine,
    PlanMoves,
    RemoveGroup,
    decode_meta_command,
    plan_bootstrap,
)
from kvcluster.meta.state_machine import MetaCommand, change
from kvcluster.sharding import FORWARD, SLOT_COUNT, Migration, Phase, next_phase

NODES = {1: "n1:7000", 2: "n2:7000", 3: "n3:7000"}
P = Phase


def layout() -> MetaState:
    """Two groups of one replica: group 1 owns 0..8191, group 2 owns 8192..16383."""
    st = plan_bootstrap("c1", NODES, 2, 1)
    assert st.owners == ((0, 8191, 1), (8192, 16383, 2))
    return st


def bumped(old: MetaState, new: MetaState) -> bool:
    """Whether ``new`` is one accepted change after ``old``, with the epoch rule: the epoch
    (the routing version) moves by one exactly when owners, groups or nodes changed."""
    layout = (old.owners, old.groups, old.nodes) != (new.owners, new.groups, new.nodes)
    return new is not old and new.epoch == old.epoch + (1 if layout else 0)


class Meta:
    """The pure rule and the state machine side by side: ``change`` on a ``MetaState`` and
    ``MetaStateMachine.apply`` on a view, fed the same commands, must agree."""

    def __init__(self, first: MetaState | None = None) -> None:
        self.state = MetaState()
        self.sm = MetaStateMachine()
        self.view = MemoryKvView()
        self.index = 0
        self.do(Bootstrap(first or layout()))

    def do(self, *cmds: MetaCommand, new: MetaState | None = None) -> Meta:
        """Apply ``cmds``, each accepted (``new``: what ``change`` gave for the only one)."""
        for cmd in cmds:
            new = new or change(self.state, cmd)
            self.index += 1
            assert self.sm.apply(self.view, self.index, cmd.encode()) == MetaResult(True, new.epoch)
            assert self.sm.load_full(self.view) == new
            assert self.sm.load(self.view) == replace(new, migrations=())
            # The memoised phases never lag behind a record (same state machine, polled
            # after every entry as a meta leader's node does).
            phases = {x.migration_id: x.phase for x in new.migrations}
            assert self.sm.migration_phases(self.view) == phases
            self.state, new = new, None
        return self

    def replay(self, cmd: MetaCommand) -> None:
        """``cmd`` is answered OK and changes nothing: the very same state comes back."""
        assert change(self.state, cmd) is self.state
        before = self.view.dump()
        self.index += 1
        result = self.sm.apply(self.view, self.index, cmd.encode())
        assert result == MetaResult(True, self.state.epoch)
        assert self.view.dump() == before

    def refused(self, cmd: MetaCommand, reason: str) -> None:
        """``cmd`` is refused with ``reason``, by ``change`` and by the state machine alike,
        and nothing changes."""
        with pytest.raises(InvalidArgument, match=reason):
            change(self.state, cmd)
        before = self.view.dump()
        self.index += 1
        result = self.sm.apply(self.view, self.index, cmd.encode())
        assert result.ok is False
        assert result.epoch == self.state.epoch
        assert result.error.startswith(f"entry {self.index}: ")
        assert re.search(reason, result.error)
        assert self.view.dump() == before

    def through(self, mid: int, last: Phase) -> Meta:
        """Migration ``mid`` advanced step by step up to ``last``."""
        return self.do(*(AdvanceMove(mid, p) for p in FORWARD[1 : FORWARD.index(last) + 1]))

    def planned(self, *moves: tuple[int, int]) -> Meta:
        return self.do(PlanMoves(moves))


# == PlanMoves ===============================================================================
def test_plan_moves_records_pending_migrations_with_fresh_ids() -> None:
    m = Meta()
    start = m.state
    m.planned((0, 2), (5, 2), (9000, 1))
    assert bumped(start, m.state)
    assert m.state.migrations == (
        Migration(1, 0, 1, 2),
        Migration(2, 5, 1, 2),
        Migration(3, 9000, 2, 1),
    )
    assert m.state.next_migration_id == 4
    assert m.state.owners == start.owners  # nothing moves until the flip
    assert m.state.migration_of(5) == Migration(2, 5, 1, 2)
    assert m.state.migration_of(6) is None
    m.planned((6, 2))
    assert m.state.migrations[-1] == Migration(4, 6, 1, 2)
    assert m.state.next_migration_id == 5


@pytest.mark.parametrize(
    ("moves", "reason"),
    [
        (((7, 2), (0, 2)), "slot 0 is already moving"),
        (((7, 2), (7, 2)), "slot 7 is already moving"),
        (((7, 2), (8, 9)), "unknown target group 9"),
        (((7, 2), (8, 0)), "unknown target group 0"),
        (((7, 2), (8, 1)), "slot 8 already belongs to group 1"),
        (((7, 2), (SLOT_COUNT, 2)), f"slot {SLOT_COUNT} has no owner"),
        (((7, 2), (70000, 2)), "slot 70000 has no owner"),
        ((), "no slots to move"),
    ],
    ids=[
        "moving",
        "twice-in-one-plan",
        "unknown-target",
        "meta-group",
        "owner",
        "no-slot",
        "far-slot",
        "empty",
    ],
)
def test_plan_moves_is_all_or_nothing(moves: tuple[tuple[int, int], ...], reason: str) -> None:
    m = Meta().planned((0, 2))
    m.refused(PlanMoves(moves), reason)  # slot 7's move, fine by itself, is not recorded


def test_a_slot_whose_aborted_migration_is_not_forgotten_is_still_moving() -> None:
    m = Meta().planned((0, 2)).do(AbortMove(1))
    m.refused(PlanMoves(((0, 2),)), "slot 0 is already moving")
    m.do(ForgetMove(1)).planned((0, 2))
    assert m.state.migration_of(0) == Migration(2, 0, 1, 2)  # ids are never reused


# == AdvanceMove =============================================================================
def test_a_migration_advances_through_every_phase_and_owners_flip_exactly_once() -> None:
    m = Meta().planned((0, 2))
    before = m.state.slot_map()
    for phase in FORWARD[1:]:
        old = m.state
        m.do(AdvanceMove(1, phase))
        assert bumped(old, m.state)
        flipped = FORWARD.index(phase) >= FORWARD.index(P.OWNERSHIP_FLIPPED)
        assert m.state.owner(0) == (2 if flipped else 1)
        mig = m.state.migration_of(0)
        if phase == P.DONE:
            assert mig is None and m.state.migrations == ()
        else:
            assert mig is not None and mig.phase == phase
        if phase == P.OWNERSHIP_FLIPPED:
            assert m.state.owners == ((0, 0, 2), (1, 8191, 1), (8192, 16383, 2))
        else:
            assert m.state.owners == old.owners  # only the flip moves a slot
    after = m.state.slot_map()
    assert all(after.owner(s) == before.owner(s) for s in range(1, SLOT_COUNT))
    assert m.state.next_migration_id == 2


def test_a_flip_next_to_the_target_s_range_merges_with_it() -> None:
    m = Meta().planned((8191, 2)).through(1, P.OWNERSHIP_FLIPPED)
    assert m.state.owners == ((0, 8190, 1), (8191, 16383, 2))


def test_migrations_of_different_slots_advance_independently() -> None:
    m = Meta().planned((0, 2), (9000, 1), (1, 2))
    m.through(2, P.OWNERSHIP_FLIPPED).through(1, P.FROZEN).through(3, P.COPYING).do(AbortMove(3))
    assert [x.phase for x in m.state.migrations] == [P.FROZEN, P.OWNERSHIP_FLIPPED, P.ABORTED]
    assert (m.state.owner(0), m.state.owner(9000), m.state.owner(1)) == (1, 1, 1)
    m.through(1, P.DONE).through(2, P.DONE).do(ForgetMove(3))
    assert m.state.migrations == ()
    assert (m.state.owner(0), m.state.owner(9000), m.state.owner(1)) == (2, 1, 1)


@pytest.mark.parametrize("reached", FORWARD[:-1], ids=lambda p: p.name)
def test_replaying_a_phase_reached_or_passed_returns_the_same_state(reached: Phase) -> None:
    m = Meta().planned((0, 2)).through(1, reached)
    for phase in FORWARD[: FORWARD.index(reached) + 1]:
        m.replay(AdvanceMove(1, phase))


def test_replaying_done_after_the_migration_is_forgotten_is_a_no_op() -> None:
    m = Meta().planned((0, 2)).through(1, P.DONE)
    m.replay(AdvanceMove(1, P.DONE))


@pytest.mark.parametrize(
    ("at", "to"),
    [
        (P.PENDING, P.FROZEN),
        (P.PENDING, P.OWNERSHIP_FLIPPED),
        (P.COPYING, P.OWNERSHIP_FLIPPED),
        (P.FROZEN, P.SOURCE_RELEASED),
        (P.OWNERSHIP_FLIPPED, P.DONE),
    ],
    ids=lambda p: p.name,
)
def test_skipping_a_phase_is_refused(at: Phase, to: Phase) -> None:
    m = Meta().planned((0, 2)).through(1, at)
    m.refused(AdvanceMove(1, to), f"cannot go from {at.name} to {to.name}")


def test_advance_needs_a_known_migration_and_never_aborts() -> None:
    m = Meta().planned((0, 2))
    m.refused(AdvanceMove(2, P.COPYING), "no migration 2")
    m.refused(AdvanceMove(2, P.DONE), "no migration 2")  # not a replay: never existed
    m.refused(AdvanceMove(1, P.ABORTED), "use abort")


# == AbortMove and ForgetMove ================================================================
@pytest.mark.parametrize("at", [P.PENDING, P.COPYING], ids=lambda p: p.name)
def test_abort_before_the_freeze_keeps_the_record_until_forget(at: Phase) -> None:
    m = Meta().planned((0, 2)).through(1, at)
    old = m.state
    m.do(AbortMove(1))
    assert bumped(old, m.state)
    assert m.state.migration_of(0) == Migration(1, 0, 1, 2, P.ABORTED)
    assert m.state.owners == old.owners and m.state.owner(0) == 1
    m.replay(AbortMove(1))
    m.refused(AdvanceMove(1, FORWARD[FORWARD.index(at) + 1]), "migration 1 was aborted")
    m.refused(AdvanceMove(1, at), "migration 1 was aborted")
    old = m.state
    m.do(ForgetMove(1))
    assert bumped(old, m.state)
    assert m.state.migrations == ()
    assert m.state.owners == layout().owners
    m.replay(ForgetMove(1))


@pytest.mark.parametrize(
    "at", [P.FROZEN, P.OWNERSHIP_FLIPPED, P.SOURCE_RELEASED], ids=lambda p: p.name
)
def test_abort_from_the_freeze_on_is_refused(at: Phase) -> None:
    # FROZEN is the point of no return: the target may activate and serve at any moment.
    m = Meta().planned((0, 2)).through(1, at)
    old = m.state
    m.refused(AbortMove(1), f"cannot be aborted in {at.name}")
    assert m.state == old


def test_abort_and_forget_need_the_right_migration() -> None:
    m = Meta().planned((0, 2))
    m.refused(AbortMove(5), "no migration 5")
    m.refused(ForgetMove(1), "migration 1 is PENDING, not ABORTED")
    m.replay(ForgetMove(5))  # nothing to forget: already gone


# == AddGroup and RemoveGroup ================================================================
def test_add_group_adds_a_group_that_owns_nothing_and_can_receive_slots() -> None:
    m = Meta()
    old = m.state
    m.do(AddGroup(3, (3, 1)))
    assert bumped(old, m.state)
    assert m.state.groups[3] == (1, 3)
    assert m.state.owners == old.owners
    m.replay(AddGroup(3, (1, 3)))
    m.replay(AddGroup(3, (3, 1)))
    m.planned((0, 3)).through(1, P.DONE)
    assert m.state.owner(0) == 3


@pytest.mark.parametrize(
    ("cmd", "reason"),
    [
        (AddGroup(2, (1,)), "group 2 exists with other replicas"),
        (AddGroup(0, (1,)), "group 0 is the meta group"),
        (AddGroup(3, ()), "at least one replica"),
        (AddGroup(3, (1, 9)), r"unknown nodes \[9\]"),
        (AddGroup(3, (1, 1)), "two replicas on one node"),
    ],
    ids=["other-replicas", "meta-group", "no-replicas", "unknown-node", "same-node-twice"],
)
def test_add_group_refusals(cmd: AddGroup, reason: str) -> None:
    Meta().refused(cmd, reason)


def test_remove_group_is_refused_while_it_owns_slots_or_takes_part_in_a_migration() -> None:
    m = Meta().do(AddGroup(3, (3,)))
    m.refused(RemoveGroup(1), "group 1 still owns slots")
    m.planned((0, 3))
    m.refused(RemoveGroup(3), "group 3 takes part in a migration")
    m.do(AbortMove(1))
    m.refused(RemoveGroup(3), "group 3 takes part in a migration")
    m.do(ForgetMove(1))
    old = m.state
    m.do(RemoveGroup(3))
    assert bumped(old, m.state)
    assert 3 not in m.state.groups
    m.replay(RemoveGroup(3))


def test_a_group_whose_slots_all_moved_away_can_be_removed() -> None:
    m = Meta().do(AddGroup(3, (3,))).planned((0, 3), (1, 3))
    m.through(1, P.DONE).through(2, P.DONE)
    assert m.state.owner(0) == m.state.owner(1) == 3
    m.refused(RemoveGroup(3), "group 3 still owns slots")
    m.planned((0, 1), (1, 1)).through(3, P.DONE).through(4, P.DONE)
    assert m.state.owners == layout().owners
    m.do(RemoveGroup(3))
    assert m.state.groups.keys() == {1, 2}


# == the JSON form ===========================================================================
def test_a_layout_with_migrations_round_trips_through_json() -> None:
    m = Meta().do(AddGroup(3, (2, 3))).planned((0, 2), (1, 3), (9000, 1), (9001, 3))
    m.do(AdvanceMove(1, P.COPYING), AbortMove(2)).through(3, P.OWNERSHIP_FLIPPED)
    st = m.state
    assert {x.phase for x in st.migrations} == {
        P.COPYING,
        P.ABORTED,
        P.OWNERSHIP_FLIPPED,
        P.PENDING,
    }
    assert MetaState.decode(st.encode()) == st
    assert MetaState.from_dict(st.to_dict()) == st
    assert MetaState.decode(st.encode()).next_migration_id == 5


def test_a_layout_without_migration_fields_decodes_with_none() -> None:
    d = layout().to_dict()
    del d["migrations"], d["next_migration_id"]
    st = MetaState.from_dict(d)
    assert st.migrations == () and st.next_migration_id == 1


def _with_migrations(migrations: list[dict[str, Any]], next_id: int = 9) -> dict[str, Any]:
    d = layout().to_dict()
    d["migrations"] = migrations
    d["next_migration_id"] = next_id
    return d


def _m(
    mid: int = 1, slot: int = 0, source: int = 1, target: int = 2, phase: str = "PENDING"
) -> dict[str, Any]:
    return {"id": mid, "slot": slot, "source": source, "target": target, "phase": phase}


@pytest.mark.parametrize(
    ("d", "reason"),
    [
        (_with_migrations([_m(phase="LOST")]), "unknown migration phase"),
        (_with_migrations([_m(target=7)]), "names an unknown group"),
        (_with_migrations([_m(mid=9)]), "not below the next id"),
        (_with_migrations([_m(1), _m(2)]), "two migrations of one slot"),
        (_with_migrations([_m(target=1)]), "to itself"),
        (_with_migrations([{**_m(), "extra": 1}]), "unknown keys"),
        (_with_migrations([_m(slot=SLOT_COUNT)]), "slot"),
    ],
    ids=["phase", "group", "id", "slot-twice", "to-itself", "extra-key", "slot-range"],
)
def test_a_malformed_layout_is_refused(d: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidArgument, match=reason):
        MetaState.decode(json.dumps(d).encode())


# == commands on the wire and the state machine ==============================================
COMMANDS: list[MetaCommand] = [
    Bootstrap(layout()),
    PlanMoves(((0, 2), (16383, 1))),
    AdvanceMove(3, P.OWNERSHIP_FLIPPED),
    AbortMove(3),
    ForgetMove(3),
    AddGroup(4, (1, 2)),
    RemoveGroup(4),
]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: type(c).__name__)
def test_meta_commands_round_trip(cmd: MetaCommand) -> None:
    assert decode_meta_command(cmd.encode()) == cmd


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"\xff",
        b"[]",
        b"7",
        b'{"op": "launch"}',
        b'{"op": "advance", "id": 1, "phase": "SIDEWAYS"}',
        b'{"op": "advance", "id": 1, "phase": ["DONE"]}',
        b'{"op": "advance", "id": -1, "phase": "DONE"}',
        b'{"op": "abort", "id": true}',
        b'{"op": "abort"}',
        b'{"op": "plan_moves", "moves": [[1]]}',
        b'{"op": "plan_moves", "moves": [[1, "2"]]}',
        b'{"op": "add_group", "group": 3, "replicas": 3}',
        b'{"op": "remove_group", "group": 1.5}',
        b'{"op": "bootstrap", "state": {"nodes": []}}',
    ],
)
def test_a_malformed_meta_command_is_answered_not_ok_and_changes_nothing(data: bytes) -> None:
    with pytest.raises(InvalidArgument):
        decode_meta_command(data)
    m = Meta().planned((0, 2))
    before = m.view.dump()
    result = m.sm.apply(m.view, 99, data)
    assert result.ok is False and result.epoch == m.state.epoch
    assert result.error.startswith("entry 99: ")
    assert m.view.dump() == before


def test_the_state_machine_applies_a_whole_migration_from_log_entries() -> None:
    sm, view = MetaStateMachine(), MemoryKvView()
    entries: list[MetaCommand] = [
        Bootstrap(layout()),
        PlanMoves(((0, 2),)),
        *(AdvanceMove(1, p) for p in FORWARD[1:]),
    ]
    answers = [sm.apply(view, i, cmd.encode()) for i, cmd in enumerate(entries, 1)]
    assert all(a.ok for a in answers)
    assert [a.epoch for a in answers] == sorted(a.epoch for a in answers)
    assert sm.apply(view, 99, AdvanceMove(1, P.DONE).encode()) == answers[-1]
    st = sm.load_full(view)
    assert st.owner(0) == 2 and st.migrations == ()


def test_nothing_but_bootstrap_before_the_cluster_exists() -> None:
    sm, view = MetaStateMachine(), MemoryKvView()
    result = sm.apply(view, 1, PlanMoves(((0, 2),)).encode())
    assert result == MetaResult(False, 0, "entry 1: the cluster has no layout yet")
    assert view.dump() == ([], [])


def test_bootstrap_replay_is_a_no_op_and_another_layout_is_refused() -> None:
    m = Meta()
    m.replay(Bootstrap(layout()))
    m.refused(Bootstrap(plan_bootstrap("c1", NODES, 3, 1)), "already exists")
    m.refused(Bootstrap(plan_bootstrap("c2", NODES, 2, 1)), "already exists")
    m.planned((0, 2))
    m.refused(Bootstrap(layout()), "already exists")


# == any sequence of commands ================================================================
_mids = st.integers(1, 6)
_plan = st.lists(
    st.tuples(st.sampled_from([0, 1, 2, 8191, 8192, 8193, 16383]), st.integers(1, 3)),
    min_size=1,
    max_size=2,
).map(lambda moves: PlanMoves(tuple(moves)))
_step = st.integers(0, 11).map(lambda i: ("step", i))  # the next phase of a migration
_other = st.one_of(
    st.builds(AdvanceMove, _mids, st.sampled_from(list(FORWARD))),
    st.builds(AbortMove, _mids),
    st.builds(ForgetMove, _mids),
    st.builds(AddGroup, st.integers(1, 3), st.sampled_from([(1,), (2,), (3,), (1, 3)])),
    st.builds(RemoveGroup, st.integers(1, 3)),
)
# About a quarter plans, half step migrations on, the rest anything else. (``one_of``
# flattens nested ``one_of``s and merges equal branches, so the weights are spelled out.)
_commands = st.one_of(
    _plan,
    _plan.map(lambda p: p),
    _step,
    _step.map(lambda s: s),
    _step.map(lambda s: (s[0], s[1] + 1)),
    _step.map(lambda s: (s[0], s[1] + 2)),
    _step.map(lambda s: (s[0], s[1] + 3)),
    _other,
)


@settings(max_examples=75, deadline=None)
@given(st.lists(_commands, min_size=10, max_size=30))
def test_any_sequence_of_commands_keeps_the_layout_consistent(
    cmds: list[MetaCommand | tuple[str, int]],
) -> None:
    """The state machine agrees with ``change`` (accepted, replayed or refused alike);
    every slot has exactly one owner, the source until the flip and the target from then
    on; an owner changes only by a flip; the layout round-trips through JSON."""
    m = Meta().do(AddGroup(3, (3,)))  # owns nothing yet
    for item in cmds:
        old = m.state
        if isinstance(item, tuple):  # advance the i-th migration recorded to its next phase
            if not old.migrations:
                continue
            mig = old.migrations[item[1] % len(old.migrations)]
            nxt = next_phase(mig.phase)
            if nxt is None:
                continue
            item = AdvanceMove(mig.migration_id, nxt)
        cmd = item
        try:
            new = change(old, cmd)
        except InvalidArgument as e:
            m.refused(cmd, re.escape(str(e)))
            continue
        if new is old:
            m.replay(cmd)
            continue
        m.do(cmd, new=new)
        assert bumped(old, new)
        assert new.slot_map().is_complete()
        assert len({x.slot for x in new.migrations}) == len(new.migrations)
        for x in new.migrations:
            assert x.migration_id < new.next_migration_id
            assert new.owner(x.slot) == (x.target if x.is_flipped else x.source)
        assert {g for _, _, g in new.owners} <= new.groups.keys()
        if new.owners != old.owners:
            assert isinstance(cmd, AdvanceMove) and cmd.phase == P.OWNERSHIP_FLIPPED
        assert MetaState.decode(new.encode()) == new
