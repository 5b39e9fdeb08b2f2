"""Migration phases: the legal transitions, idempotent replays, ownership per phase."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvcluster.errors import InvalidArgument
from kvcluster.sharding import (
    FORWARD,
    TRANSITIONS,
    Migration,
    Phase,
    SlotState,
    abort,
    advance,
    next_phase,
)

P = Phase
BEFORE_FREEZE = (P.PENDING, P.COPYING)  # abortable; FROZEN is the point of no return


def new() -> Migration:
    return Migration(migration_id=11, slot=42, source=1, target=2)


def at(phase: Phase) -> Migration:
    m = new()
    if phase == P.ABORTED:
        return abort(m)
    for step in FORWARD[1 : FORWARD.index(phase) + 1]:
        m = advance(m, step)
    return m


def test_happy_path() -> None:
    m = new()
    assert m.phase == P.PENDING
    seen: list[Phase] = [m.phase]
    while (step := next_phase(m.phase)) is not None:
        m = advance(m, step)
        seen.append(m.phase)
    assert tuple(seen) == FORWARD
    assert m.phase == P.DONE and m.is_finished


def test_every_phase_comes_from_its_predecessor_only() -> None:
    predecessors: dict[Phase, set[Phase]] = {p: set() for p in P}
    for src, dests in TRANSITIONS.items():
        for dst in dests:
            predecessors[dst].add(src)
    for i, phase in enumerate(FORWARD[1:], start=1):
        assert predecessors[phase] == {FORWARD[i - 1]}
    assert predecessors[P.PENDING] == set()
    assert predecessors[P.ABORTED] == set(BEFORE_FREEZE)


@pytest.mark.parametrize("src", list(P))
@pytest.mark.parametrize("dst", list(P))
def test_transition_table(src: Phase, dst: Phase) -> None:
    m = at(src)
    if dst == src:
        assert advance(m, dst) is m
        return
    legal = dst != P.ABORTED and next_phase(src) == dst
    if legal:
        assert advance(m, dst) == Migration(11, 42, 1, 2, dst)
    else:
        with pytest.raises(InvalidArgument):
            advance(m, dst)


@pytest.mark.parametrize("src", list(P))
def test_abort_only_before_the_freeze(src: Phase) -> None:
    m = at(src)
    if src in BEFORE_FREEZE:
        aborted = abort(m)
        assert aborted.phase == P.ABORTED and aborted.is_finished
        assert abort(aborted) is aborted  # replayed abort
    elif src == P.ABORTED:
        assert abort(m) is m
    else:
        with pytest.raises(InvalidArgument):
            abort(m)


def test_advance_to_aborted_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="abort"):
        advance(new(), P.ABORTED)


@pytest.mark.parametrize("bad", [1, "COPYING", None])
def test_advance_needs_a_phase(bad: Any) -> None:
    with pytest.raises(InvalidArgument):
        advance(new(), bad)


Op = tuple[str, Phase | None]
ops = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.sampled_from(list(P))),
        st.tuples(st.just("abort"), st.none()),
        # Bias towards progress so that long runs reach the later phases too.
        st.tuples(st.sampled_from(["next", "replay"]), st.none()),
    ),
    max_size=30,
)


@given(ops)
def test_random_step_sequences_follow_the_rules(steps: list[Op]) -> None:
    """Apply random steps; legal ones must match a model written from the spec, illegal ones
    must raise and change nothing; the phases visited are a prefix of the forward sequence,
    possibly followed by ABORTED if and only if the prefix stopped before the flip."""
    m = new()
    visited = [m.phase]
    for kind, step_to in steps:
        before = m
        phase = m.phase
        to = step_to
        if kind == "next":
            kind, to = "advance", next_phase(phase) or P.DONE
        elif kind == "replay":
            kind, to = "advance", phase
        if kind == "abort":
            ok = phase in (*BEFORE_FREEZE, P.ABORTED)
            expected = P.ABORTED
        else:
            assert to is not None
            ok = to == phase or (
                phase not in (P.DONE, P.ABORTED)
                and to != P.ABORTED
                and FORWARD.index(to) == FORWARD.index(phase) + 1
            )
            expected = to
        if not ok:
            with pytest.raises(InvalidArgument):
                abort(m) if kind == "abort" else advance(m, to)  # type: ignore[arg-type]
            assert m == before
            continue
        m = abort(m) if kind == "abort" else advance(m, to)  # type: ignore[arg-type]
        assert m.phase == expected
        if expected == phase:
            assert m is before  # a replayed step is a no-op
        else:
            visited.append(m.phase)
        assert (m.slot, m.source, m.target, m.migration_id) == (42, 1, 2, 11)
    if visited[-1] == P.ABORTED:
        assert tuple(visited[:-1]) == FORWARD[: len(visited) - 1]
        assert visited[-2] in BEFORE_FREEZE
    else:
        assert tuple(visited) == FORWARD[: len(visited)]


@pytest.mark.parametrize(
    ("phase", "owner", "source_state", "target_state"),
    [
        (P.PENDING, 1, SlotState.MIGRATING, SlotState.IMPORTING),
        (P.COPYING, 1, SlotState.MIGRATING, SlotState.IMPORTING),
        (P.FROZEN, 1, SlotState.MIGRATING, SlotState.IMPORTING),
        (P.OWNERSHIP_FLIPPED, 2, SlotState.MIGRATING, SlotState.IMPORTING),
        (P.SOURCE_RELEASED, 2, SlotState.MIGRATING, SlotState.IMPORTING),
        (P.DONE, 2, SlotState.STABLE, SlotState.STABLE),
        (P.ABORTED, 1, SlotState.STABLE, SlotState.STABLE),
    ],
)
def test_owner_and_slot_states(
    phase: Phase, owner: int, source_state: SlotState, target_state: SlotState
) -> None:
    m = at(phase)
    assert m.owner == owner
    assert m.is_flipped == (owner == 2)
    assert m.state_of(1) == source_state
    assert m.state_of(2) == target_state
    assert m.state_of(3) == SlotState.STABLE


@pytest.mark.parametrize(
    "kwargs",
    [
        {"migration_id": 1, "slot": 5, "source": 1, "target": 1},
        {"migration_id": 1, "slot": 16384, "source": 1, "target": 2},
        {"migration_id": -1, "slot": 5, "source": 1, "target": 2},
        {"migration_id": 1, "slot": 5, "source": -1, "target": 2},
        {"migration_id": 1, "slot": 5, "source": 1, "target": 0xFFFF},
        {"migration_id": 1, "slot": 5, "source": 1, "target": 2, "phase": 3},
    ],
)
def test_bad_migrations(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        Migration(**kwargs)


@pytest.mark.parametrize("phase", list(P))
def test_serialisation_round_trip(phase: Phase) -> None:
    m = at(phase)
    data = json.loads(json.dumps(m.to_dict()))
    assert data["phase"] == phase.name
    assert Migration.from_dict(data) == m


@pytest.mark.parametrize(
    "patch",
    [
        {"phase": "MOVING"},
        {"phase": 1},
        {"slot": "42"},
        {"id": None},
        {"source": 2},
        {"extra": True},
    ],
)
def test_from_dict_rejects_malformed_input(patch: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        Migration.from_dict({**new().to_dict(), **patch})


def test_from_dict_rejects_non_mappings() -> None:
    with pytest.raises(InvalidArgument):
        Migration.from_dict([42, 1, 2])
