"""Properties: simulated histories are linearizable, corrupted ones are not, and on small
histories the checker agrees with a brute-force search that has none of its reductions."""

from __future__ import annotations

import random
from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jepsen_lite import KeyResult, Model, Operation, Outcome, build_history, check_history
from jepsen_lite import get_model as model_named
from jepsen_lite.models import State
from jepsen_lite.synth import simulate

Events = list[dict[str, object]]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

models = st.sampled_from(["register", "kv"])


def assert_legal(model: Model, result: KeyResult) -> None:
    """`result.linearization` replays in the model and respects real-time order; when valid,
    it places every ok op; it never places a failed or pruned op."""
    state = model.init()
    for step in result.linearization:
        ok, after = model.step(state, step.op)
        assert ok and (step.before, step.after) == (state, after), step
        state = after
    placed = [s.op for s in result.linearization]
    assert len({op.id for op in placed}) == len(placed)
    assert all(op.status != "fail" and op.id not in result.pruned for op in placed)
    for i, later in enumerate(placed):
        for earlier in placed[i + 1 :]:  # placed after `later`: must not have completed before it
            assert not (
                earlier.status == "ok"
                and earlier.complete_index is not None
                and earlier.complete_index < later.invoke_index
            ), (later, earlier)
    if result.outcome is Outcome.VALID:
        assert {op.id for op in result.ops if op.status == "ok"} <= {op.id for op in placed}


@SETTINGS
@given(
    rng=st.randoms(use_true_random=False),
    model=models,
    ops=st.integers(1, 60),
    processes=st.integers(1, 10),
    keys=st.integers(1, 3),
    info=st.sampled_from([0.0, 0.1, 0.3]),
    fail=st.sampled_from([0.0, 0.1]),
)
def test_simulated_histories_are_linearizable(
    rng: random.Random, model: str, ops: int, processes: int, keys: int, info: float, fail: float
) -> None:
    events = simulate(rng, model, ops=ops, processes=processes, keys=keys, info=info, fail=fail)
    verdict = check_history(events, model, timeout=30)
    assert verdict.outcome is Outcome.VALID, verdict.explain()
    for result in verdict.keys.values():
        assert_legal(model_named(model), result)


@SETTINGS
@given(
    rng=st.randoms(use_true_random=False),
    model=models,
    ops=st.integers(2, 60),
    processes=st.integers(1, 10),
    info=st.sampled_from([0.0, 0.1, 0.3]),
)
def test_a_read_of_a_value_never_written_is_caught(
    rng: random.Random, model: str, ops: int, processes: int, info: float
) -> None:
    events = simulate(rng, model, ops=ops, processes=processes, keys=2, info=info)
    reads = [e for e in events if e["type"] == "ok" and e["f"] in ("read", "get")]
    if not reads:
        return
    victim = rng.choice(reads)
    victim["value"] = "never written" if model == "register" else "#never written#"
    verdict = check_history(events, model, timeout=30)
    assert verdict.outcome is Outcome.INVALID
    assert verdict.failed_key == victim["key"]
    result = verdict.keys[str(victim["key"])]
    assert result.stuck is not None and result.candidates
    assert_legal(model_named(model), result)


# --- agreement with brute force on small histories -------------------------------------------


def brute_force(model: Model, events: Events) -> bool:
    """The definition, searched directly: some order of all ok ops and any subset of info ops
    replays in the model and respects real-time order. Memoized, but none of the checker's
    reductions (no pruning, no forced reads, no symmetry, no lookahead, no merged states)."""
    history = build_history(events, model)
    return all(_brute_key(model, ops) for ops in history.by_key().values())


def _brute_key(model: Model, ops: Sequence[Operation]) -> bool:
    det = [op for op in ops if op.status == "ok"]
    info = [op for op in ops if op.status == "info"]
    dead: set[tuple[frozenset[int], State]] = set()

    def extend(state: State, placed: frozenset[int]) -> bool:
        waiting = [op for op in det if op.id not in placed]
        if not waiting:
            return True
        if (placed, state) in dead:
            return False
        first_return = min(op.complete_index or 0 for op in waiting)
        for op in [*waiting, *info]:
            if op.id in placed or op.invoke_index > first_return:
                continue
            ok, after = model.step(state, op)
            if ok and extend(after, placed | {op.id}):
                return True
        dead.add((placed, state))
        return False

    return extend(model.init(), frozenset())


def corrupt(rng: random.Random, model: str, events: Events) -> Events:
    """Change a few read values and swap a few ok/fail completions."""
    events = [dict(e) for e in events]
    completions = [e for e in events if e["type"] in ("ok", "fail")]
    for e in rng.sample(completions, min(len(completions), rng.randint(0, 2))):
        if e["f"] in ("read", "get"):
            if model == "register":
                e["value"] = rng.choice([None, 0, 1, 2])
            else:
                e["value"] = rng.choice([None, "p0.", "p1.", "p0.a1.", "a1.", "a1.a2.", "a2.a1."])
            e["type"] = "ok"
        elif e["f"] != "cas":  # a failed cas may be one whose expected value did not match
            e["type"] = "fail" if e["type"] == "ok" else "ok"
    return events


@settings(max_examples=300, deadline=None)
@given(
    rng=st.randoms(use_true_random=False),
    model=models,
    ops=st.integers(1, 9),
    processes=st.integers(1, 4),
    info=st.sampled_from([0.0, 0.2, 0.4]),
)
def test_agrees_with_brute_force(
    rng: random.Random, model: str, ops: int, processes: int, info: float
) -> None:
    events = simulate(rng, model, ops=ops, processes=processes, info=info, fail=0.1, values=3)
    events = corrupt(rng, model, events)
    verdict = check_history(events, model, timeout=30)
    assert verdict.outcome is not Outcome.UNKNOWN
    assert verdict.valid == brute_force(model_named(model), events), events
    for result in verdict.keys.values():
        assert_legal(model_named(model), result)


@settings(max_examples=40, deadline=None)
@given(
    rng=st.randoms(use_true_random=False),
    model=models,
    ops=st.integers(10, 30),
    processes=st.integers(2, 5),
    info=st.sampled_from([0.0, 0.2, 0.4]),
)
def test_agrees_with_brute_force_on_longer_histories(
    rng: random.Random, model: str, ops: int, processes: int, info: float
) -> None:
    events = simulate(rng, model, ops=ops, processes=processes, info=info, fail=0.1, values=3)
    events = corrupt(rng, model, events)
    verdict = check_history(events, model, timeout=30)
    assert verdict.valid == brute_force(model_named(model), events), events
