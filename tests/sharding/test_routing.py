"""route_request as a decision table: one row per situation a node can be in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvcluster.errors import InvalidArgument
from kvcluster.sharding import (
    SLOT_COUNT,
    Ask,
    ClusterDown,
    Decision,
    GroupInfo,
    Migration,
    Moved,
    NotLeaderRedirect,
    Phase,
    Serve,
    SlotMap,
    TryAgain,
    abort,
    advance,
    route_request,
)
from kvcluster.sharding.migration import FORWARD

P = Phase
SLOT = 100
A1, A2, A3 = "g1:7000", "g2:7000", "g3:7000"
GROUPS = [GroupInfo(1, (A1, "g1:7001")), GroupInfo(2, (A2,)), GroupInfo(3, (A3,))]
EPOCH = 12
# Slot 100 is on group 1; 200 on group 2; 300 nobody's; 400 on group 9, which has no address.
BASE = SlotMap(epoch=EPOCH, ranges=[(100, 100, 1), (200, 200, 2), (400, 400, 9)], groups=GROUPS)
FLIPPED_MAP = BASE.with_assignment([SLOT], 2)  # the map after the meta group's flip


def migration(phase: Phase | None, source: int = 1, target: int = 2) -> Migration | None:
    if phase is None:
        return None
    m = Migration(7, SLOT, source, target)
    if phase == P.ABORTED:
        return abort(m)
    for step in FORWARD[1 : FORWARD.index(phase) + 1]:
        m = advance(m, step)
    return m


@dataclass
class Case:
    me: int
    slot: int = SLOT
    phase: Phase | None = None
    target: int = 2
    slot_map: SlotMap = BASE
    frozen: frozenset[int] = field(default_factory=frozenset)
    leader: bool = True
    leader_address: str | None = "g1:7001"
    asking: bool = False
    stale_read: bool = False

    def decide(self) -> Decision:
        m = migration(self.phase, target=self.target)
        return route_request(
            self.slot,
            self.me,
            self.slot_map,
            self.frozen,
            {} if m is None else {SLOT: m},
            self.leader,
            self.leader_address,
            asking=self.asking,
            stale_read=self.stale_read,
        )


FROZEN_HERE = frozenset({SLOT})

TABLE: list[tuple[str, Case, Decision]] = [
    # --- no migration ---
    ("owner leader serves", Case(me=1), Serve(SLOT)),
    (
        "owner follower names leader",
        Case(me=1, leader=False),
        NotLeaderRedirect("g1:7001"),
    ),
    (
        "owner follower, leader unknown",
        Case(me=1, leader=False, leader_address=None),
        NotLeaderRedirect(None),
    ),
    ("owner follower, stale read allowed", Case(me=1, leader=False, stale_read=True), Serve(SLOT)),
    ("other group owns it", Case(me=1, slot=200), Moved(200, A2, EPOCH)),
    ("follower hands out MOVED too", Case(me=1, slot=200, leader=False), Moved(200, A2, EPOCH)),
    ("nobody owns it", Case(me=1, slot=300), ClusterDown("slot 300 is not served by any group")),
    (
        "owner's address unknown",
        Case(me=1, slot=400),
        ClusterDown("slot 400 belongs to group 9, whose address is unknown"),
    ),
    # --- on the source (group 1) ---
    ("source, pending: serves", Case(me=1, phase=P.PENDING), Serve(SLOT)),
    ("source, copying: serves", Case(me=1, phase=P.COPYING), Serve(SLOT)),
    (
        "source, copying, follower",
        Case(me=1, phase=P.COPYING, leader=False),
        NotLeaderRedirect("g1:7001"),
    ),
    # a frozen move is decided: the source sends the request to the target with ASK
    ("source, frozen in its log", Case(me=1, phase=P.COPYING, frozen=FROZEN_HERE), Ask(SLOT, A2)),
    ("source, meta says frozen, log not yet", Case(me=1, phase=P.FROZEN), Ask(SLOT, A2)),
    (
        "source, frozen: stale reads refused too",
        Case(me=1, phase=P.FROZEN, frozen=FROZEN_HERE, leader=False, stale_read=True),
        Ask(SLOT, A2),
    ),
    (
        "source, frozen, no migration known (log ahead of meta)",
        Case(me=1, frozen=FROZEN_HERE),
        TryAgain(SLOT),
    ),
    (
        "source knows flip, map stale",
        Case(me=1, phase=P.OWNERSHIP_FLIPPED, frozen=FROZEN_HERE),
        Ask(SLOT, A2),
    ),
    ("source released, map stale", Case(me=1, phase=P.SOURCE_RELEASED), Ask(SLOT, A2)),
    ("source, done, map stale", Case(me=1, phase=P.DONE), Ask(SLOT, A2)),
    (
        "source knows flip, target address unknown",
        Case(me=1, phase=P.OWNERSHIP_FLIPPED, target=9),
        TryAgain(SLOT),
    ),
    (
        "source, flip in its map",
        Case(me=1, phase=P.OWNERSHIP_FLIPPED, frozen=FROZEN_HERE, slot_map=FLIPPED_MAP),
        Moved(SLOT, A2, EPOCH + 1),
    ),
    ("source, aborted: serves", Case(me=1, phase=P.ABORTED), Serve(SLOT)),
    (
        "source, aborted, unfreeze not applied",
        Case(me=1, phase=P.ABORTED, frozen=FROZEN_HERE),
        TryAgain(SLOT),
    ),
    # --- on the target (group 2) ---
    ("target before flip: MOVED to source", Case(me=2, phase=P.COPYING), Moved(SLOT, A1, EPOCH)),
    (
        "target frozen phase, no ASKING",
        Case(me=2, phase=P.FROZEN),
        Moved(SLOT, A1, EPOCH),
    ),
    (
        "target before flip, ASKING: source is ahead",
        Case(me=2, phase=P.FROZEN, asking=True),
        TryAgain(SLOT),
    ),
    (
        "target knows nothing yet, ASKING",
        Case(me=2, asking=True),
        TryAgain(SLOT),
    ),
    ("target knows flip, map stale", Case(me=2, phase=P.OWNERSHIP_FLIPPED), Serve(SLOT)),
    (
        "target knows flip, map stale, ASKING",
        Case(me=2, phase=P.OWNERSHIP_FLIPPED, asking=True),
        Serve(SLOT),
    ),
    (
        "target knows flip, follower",
        Case(me=2, phase=P.SOURCE_RELEASED, leader=False, leader_address=A2),
        NotLeaderRedirect(A2),
    ),
    (
        "target with the flipped map",
        Case(me=2, phase=P.OWNERSHIP_FLIPPED, slot_map=FLIPPED_MAP),
        Serve(SLOT),
    ),
    ("target, map flipped, migration unknown", Case(me=2, slot_map=FLIPPED_MAP), Serve(SLOT)),
    ("target, aborted", Case(me=2, phase=P.ABORTED), Moved(SLOT, A1, EPOCH)),
    ("target, aborted, ASKING", Case(me=2, phase=P.ABORTED, asking=True), TryAgain(SLOT)),
    # --- on a bystander (group 3) ---
    ("bystander, copying", Case(me=3, phase=P.COPYING), Moved(SLOT, A1, EPOCH)),
    ("bystander, map stale after flip", Case(me=3, phase=P.DONE), Moved(SLOT, A1, EPOCH)),
    (
        "bystander, ASKING for someone else's migration",
        Case(me=3, phase=P.COPYING, asking=True),
        Moved(SLOT, A1, EPOCH),
    ),
    (
        "bystander with the flipped map",
        Case(me=3, phase=P.DONE, slot_map=FLIPPED_MAP),
        Moved(SLOT, A2, EPOCH + 1),
    ),
    # --- a later move overrides an old, flipped migration ---
    (
        "old migration to me, map moved on to group 3",
        Case(me=2, phase=P.DONE, slot_map=BASE.with_assignment([SLOT], 3)),
        Moved(SLOT, A3, EPOCH + 1),
    ),
]


@pytest.mark.parametrize(
    ("case", "expected"), [(c, e) for _, c, e in TABLE], ids=[n for n, *_ in TABLE]
)
def test_decision_table(case: Case, expected: Decision) -> None:
    assert case.decide() == expected


def test_migration_under_the_wrong_slot_is_rejected() -> None:
    m = Migration(1, 5, 1, 2)
    with pytest.raises(InvalidArgument):
        route_request(SLOT, 1, BASE, frozenset(), {SLOT: m}, True, None)


@pytest.mark.parametrize(("slot", "me"), [(-1, 1), (SLOT_COUNT, 1), (SLOT, -1), (SLOT, True)])
def test_bad_input_is_rejected(slot: Any, me: Any) -> None:
    with pytest.raises(InvalidArgument):
        route_request(slot, me, BASE, frozenset(), {}, True, None)


@given(
    st.sampled_from([None, *P]),
    st.sampled_from([1, 2, 3]),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.sampled_from([BASE, FLIPPED_MAP]),
)
def test_safety_properties(
    phase: Phase | None,
    me: int,
    frozen: bool,
    leader: bool,
    asking: bool,
    stale_read: bool,
    slot_map: SlotMap,
) -> None:
    """Whatever the node knows: only one group may serve the slot at a time, in any mix of
    views that can occur together; a frozen slot is never served by its source; before the
    flip, this model never lets the target serve (the node does, once its copy is active)."""
    case = Case(
        me=me,
        phase=phase,
        slot_map=slot_map,
        frozen=FROZEN_HERE if frozen else frozenset(),
        leader=leader,
        asking=asking,
        stale_read=stale_read,
    )
    decision = case.decide()
    if frozen and me == 1:
        assert not isinstance(decision, Serve)
    flipped = phase in (P.OWNERSHIP_FLIPPED, P.SOURCE_RELEASED, P.DONE)
    if isinstance(decision, Serve):
        assert leader or stale_read
        owner_known = 2 if (flipped or slot_map is FLIPPED_MAP) else 1
        assert me == owner_known
    if isinstance(decision, Moved):
        assert decision.epoch == slot_map.epoch
        assert decision.address != {1: A1, 2: A2, 3: A3}[me]
