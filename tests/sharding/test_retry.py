"""The client's retry decision and target choice, plus a simulated client loop."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvcluster import errors
from kvcluster.errors import InvalidArgument
from kvcluster.sharding import (
    Ask,
    ClusterDown,
    GiveUp,
    GroupInfo,
    Migration,
    Moved,
    NotLeaderRedirect,
    Phase,
    Reply,
    Retry,
    RetryBudget,
    Serve,
    SlotMap,
    TryAgain,
    Unreachable,
    advance,
    choose_target,
    give_up_error,
    next_action,
    reply_error,
    route_request,
)

BUDGET = RetryBudget(max_attempts=5, base_backoff_ticks=2, max_backoff_ticks=10)
EPOCH = 10

TABLE: list[tuple[str, Reply, Retry]] = [
    (
        "moved, newer epoch",
        Moved(7, "b:1", EPOCH + 1),
        Retry("b:1", refresh_map=True, remember_slot=True),
    ),
    ("moved, same epoch", Moved(7, "b:1", EPOCH), Retry("b:1", remember_slot=True)),
    ("moved from a lagging node", Moved(7, "b:1", EPOCH - 1), Retry(None, backoff_ticks=2)),
    ("ask", Ask(7, "b:1"), Retry("b:1", asking=True)),
    ("tryagain", TryAgain(7), Retry(None, backoff_ticks=2)),
    ("clusterdown", ClusterDown("x"), Retry(None, refresh_map=True, backoff_ticks=2)),
    ("not leader, leader named", NotLeaderRedirect("a:2"), Retry("a:2", remember_leader=True)),
    (
        "not leader, election",
        NotLeaderRedirect(None),
        Retry(None, refresh_map=True, backoff_ticks=2),
    ),
    (
        "unreachable",
        Unreachable("a:1", maybe_sent=True),
        Retry(None, refresh_map=True, backoff_ticks=2, avoid="a:1"),
    ),
]


@pytest.mark.parametrize(
    ("reply", "expected"), [(r, e) for _, r, e in TABLE], ids=[n for n, *_ in TABLE]
)
def test_decision_table(reply: Reply, expected: Retry) -> None:
    assert next_action(reply, attempt=1, budget=BUDGET, map_epoch=EPOCH) == expected


@pytest.mark.parametrize("reply", [r for _, r, _ in TABLE])
def test_budget_ends_in_give_up(reply: Reply) -> None:
    assert isinstance(next_action(reply, attempt=4, budget=BUDGET, map_epoch=EPOCH), Retry)
    out = next_action(reply, attempt=5, budget=BUDGET, map_epoch=EPOCH)
    assert out == GiveUp("retry budget of 5 attempts exhausted", 5, reply)


def test_backoff_grows_and_is_capped() -> None:
    assert [BUDGET.backoff(n) for n in range(1, 7)] == [2, 4, 8, 10, 10, 10]
    assert RetryBudget().backoff(10**6) == 64
    got = [next_action(TryAgain(1), attempt=n, budget=BUDGET, map_epoch=0) for n in (1, 2, 3)]
    assert [r.backoff_ticks for r in got if isinstance(r, Retry)] == [2, 4, 8]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"base_backoff_ticks": -1},
        {"max_backoff_ticks": 0},
        {"max_attempts": True},
    ],
)
def test_bad_budgets(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        RetryBudget(**kwargs)


def test_bad_replies_and_attempts() -> None:
    with pytest.raises(InvalidArgument):
        next_action(Serve(1), attempt=1, budget=BUDGET, map_epoch=0)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        next_action(TryAgain(1), attempt=0, budget=BUDGET, map_epoch=0)


# --- choose_target ----------------------------------------------------------------------

MAP = SlotMap(
    epoch=EPOCH,
    ranges=[(0, 9, 1), (10, 19, 2), (30, 39, 9)],
    groups=[GroupInfo(1, ("a:1", "a:2", "a:3"), leader="a:2"), GroupInfo(2, ("b:1",))],
)


@pytest.mark.parametrize(
    ("slot", "moved", "avoid", "expected"),
    [
        (0, None, None, "a:2"),  # the leader hint
        (0, None, "a:2", "a:1"),  # leader avoided: first other replica
        (0, None, "a:1", "a:2"),
        (0, {0: "b:1"}, None, "b:1"),  # learned from MOVED
        (0, {0: "b:1"}, "b:1", "a:2"),
        (0, {5: "b:1"}, None, "a:2"),
        (10, None, None, "b:1"),
        (10, None, "b:1", "b:1"),  # the only replica, even if avoided
        (20, None, None, None),  # unowned
        (30, None, None, None),  # owner has no address
    ],
)
def test_choose_target(
    slot: int, moved: dict[int, str] | None, avoid: str | None, expected: str | None
) -> None:
    assert choose_target(slot, MAP, moved=moved, avoid=avoid) == expected


# --- the client loop, simulated against route_request -----------------------------------


class Cluster:
    """Nodes answer with route_request from their own (possibly stale) views."""

    def __init__(self, views: dict[str, tuple[int, SlotMap, dict[int, Migration], bool]]) -> None:
        self.views = views  # addr -> (group, map, migrations, is_leader)
        self.leaders = {g: a for a, (g, _, _, lead) in views.items() if lead}
        self.log: list[str] = []

    def send(self, addr: str, slot: int, asking: bool) -> Reply | Serve:
        self.log.append(addr + (" ASKING" if asking else ""))
        if addr not in self.views:
            return Unreachable(addr, maybe_sent=False)
        group, slot_map, migrations, is_leader = self.views[addr]
        return route_request(
            slot,
            group,
            slot_map,
            frozenset(),
            migrations,
            is_leader,
            self.leaders.get(group),
            asking=asking,
        )


def run_client(
    cluster: Cluster, slot: int, cached: SlotMap, fresh: SlotMap, budget: RetryBudget
) -> tuple[str, int, int]:
    """The loop of retry.py's docstring; returns (outcome, attempts, ticks waited)."""
    moved: dict[int, str] = {}
    target: str | None = None
    asking = False
    avoid: str | None = None
    attempt = waited = 0
    while True:
        addr = target or choose_target(slot, cached, moved=moved, avoid=avoid)
        assert addr is not None
        attempt += 1
        reply = cluster.send(addr, slot, asking)
        if isinstance(reply, Serve):
            return f"served by {addr}", attempt, waited
        action = next_action(reply, attempt=attempt, budget=budget, map_epoch=cached.epoch)
        if isinstance(action, GiveUp):
            error = give_up_error(action, maybe_applied=False)
            return f"gave up: {type(error).__name__} after {action.last}", attempt, waited
        if action.remember_slot and action.target is not None:
            moved[slot] = action.target
        if action.remember_leader and action.target is not None:
            owner = cached.owner(slot)
            if owner is not None and action.target in cached.groups[owner].replicas:
                cached = cached.with_leader_hint(owner, action.target)
        if action.refresh_map:
            cached, moved = fresh, {}
        waited += action.backoff_ticks
        target, asking, avoid = action.target, action.asking, action.avoid


G1 = GroupInfo(1, ("a:1", "a:2"))
G2 = GroupInfo(2, ("b:1", "b:2"))
OLD = SlotMap(epoch=5, ranges=[(0, 16383, 1)], groups=[G1, G2])
NEW = OLD.with_assignment([7], 2)


def test_client_follows_moved_and_not_leader() -> None:
    cluster = Cluster(
        {
            "a:1": (1, NEW, {}, True),
            "a:2": (1, NEW, {}, False),
            "b:1": (2, NEW, {}, False),
            "b:2": (2, NEW, {}, True),
        }
    )
    outcome = run_client(cluster, 7, OLD, NEW, RetryBudget())
    assert outcome == ("served by b:2", 3, 0)
    assert cluster.log == ["a:1", "b:1", "b:2"]


def test_client_follows_ask_during_cutover() -> None:
    flipped = Migration(3, 7, 1, 2)
    for phase in (Phase.COPYING, Phase.FROZEN, Phase.OWNERSHIP_FLIPPED):
        flipped = advance(flipped, phase)
    cluster = Cluster(
        {
            "a:1": (1, OLD, {7: flipped}, True),  # source: knows the flip, map not yet
            "b:1": (2, OLD, {7: flipped}, True),  # target: the same
        }
    )
    outcome = run_client(cluster, 7, OLD, OLD, RetryBudget())
    assert outcome == ("served by b:1", 2, 0)
    assert cluster.log == ["a:1", "b:1 ASKING"]


def test_client_gives_up_on_a_frozen_slot_within_budget() -> None:
    """The frozen source asks the target, whose copy never becomes active here: the client
    goes back and forth (ASK at once, TRYAGAIN with a backoff) and gives up in budget."""
    frozen = advance(advance(Migration(3, 7, 1, 2), Phase.COPYING), Phase.FROZEN)
    cluster = Cluster({"a:1": (1, OLD, {7: frozen}, True), "b:1": (2, OLD, {7: frozen}, True)})
    budget = RetryBudget(max_attempts=6, base_backoff_ticks=1, max_backoff_ticks=8)
    outcome = run_client(cluster, 7, OLD, OLD, budget)
    assert outcome == ("gave up: RetryBudgetExhausted after TryAgain(slot=7)", 6, 2 + 8)
    assert cluster.log == ["a:1", "b:1 ASKING"] * 3


def test_client_routes_around_an_unreachable_leader() -> None:
    cached = OLD.with_leader_hint(1, "a:1")
    cluster = Cluster({"a:2": (1, OLD, {}, True)})  # a:1 is down; a:2 was elected
    outcome = run_client(cluster, 7, cached, OLD, RetryBudget())
    assert outcome == ("served by a:2", 2, 1)


@given(
    st.lists(st.sampled_from([r for _, r, _ in TABLE]), min_size=1, max_size=40), st.integers(1, 20)
)
def test_every_reply_sequence_ends_within_budget(replies: list[Reply], max_attempts: int) -> None:
    budget = RetryBudget(max_attempts=max_attempts)
    for attempt, reply in enumerate(replies, start=1):
        action = next_action(reply, attempt=attempt, budget=budget, map_epoch=EPOCH)
        if isinstance(action, GiveUp):
            assert attempt == max_attempts
            return
        assert attempt < max_attempts
        assert 0 <= action.backoff_ticks <= budget.max_backoff_ticks
    assert len(replies) < max_attempts


# --- replies and give-ups as kvcluster.errors exceptions --------------------------------


@pytest.mark.parametrize(
    ("reply", "error", "fields"),
    [
        (Moved(7, "b:1", 3), errors.Moved, {"slot": 7, "address": "b:1", "epoch": 3}),
        (Ask(7, "b:1"), errors.Ask, {"slot": 7, "address": "b:1"}),
        (TryAgain(7), errors.TryAgain, {"slot": 7}),
        (ClusterDown("no owner"), errors.ClusterDown, {}),
        (NotLeaderRedirect("a:2"), errors.LeaderRedirect, {"leader_id": 0, "address": "a:2"}),
        (NotLeaderRedirect(None), errors.LeaderRedirect, {"leader_id": 0, "address": ""}),
        (Unreachable("a:1", maybe_sent=True), errors.OutcomeUnknown, {}),
        (Unreachable("a:1", maybe_sent=False), errors.ServiceUnavailable, {}),
    ],
)
def test_reply_error(reply: Reply, error: type[Exception], fields: dict[str, Any]) -> None:
    exc = reply_error(reply)
    assert type(exc) is error
    for name, value in fields.items():
        assert getattr(exc, name) == value


def test_give_up_error_tells_did_not_happen_from_may_have_happened() -> None:
    give_up = GiveUp("budget", 5, TryAgain(7))
    spent = give_up_error(give_up, maybe_applied=False)
    assert isinstance(spent, errors.RetryBudgetExhausted)
    assert spent.attempts == 5 and isinstance(spent.last_error, errors.TryAgain)
    assert isinstance(give_up_error(give_up, maybe_applied=True), errors.OutcomeUnknown)
    with pytest.raises(InvalidArgument):
        reply_error(Serve(1))  # type: ignore[arg-type]
