"""Hand-written histories: what is and is not linearizable, and what the checker reports."""

from __future__ import annotations

import random

import pytest
from jepsen_lite import Outcome, Verdict, check_history
from jepsen_lite.synth import simulate

Row = tuple[object, ...]


def events(*rows: Row) -> list[dict[str, object]]:
    """Rows of (process, type, f, value[, key]); time is the row's index; key defaults to x."""
    out: list[dict[str, object]] = []
    for time, (process, type, f, value, *key) in enumerate(rows):
        out.append(
            {
                "process": process,
                "type": type,
                "f": f,
                "key": key[0] if key else "x",
                "value": value,
                "time": time,
            }
        )
    return out


def ok(process: int, f: str, value: object, key: str = "x") -> list[Row]:
    """A sequential op: invoke then ok (a read's invoke carries null)."""
    invoke_value = None if f in ("read", "get") else value
    return [(process, "invoke", f, invoke_value, key), (process, "ok", f, value, key)]


def check(model: str, *rows: Row) -> Verdict:
    return check_history(events(*rows), model, timeout=10)


def valid(model: str, *rows: Row) -> bool:
    verdict = check(model, *rows)
    assert verdict.outcome is not Outcome.UNKNOWN
    return verdict.valid


# --- register ---------------------------------------------------------------------------------


def test_sequential_register() -> None:
    assert valid("register", *ok(0, "read", None), *ok(0, "write", 1), *ok(1, "read", 1))
    assert not valid("register", *ok(0, "write", 1), *ok(1, "read", 2))


def test_stale_read_is_reported_with_the_longest_prefix() -> None:
    verdict = check(
        "register", *ok(0, "write", 1), *ok(1, "write", 2), *ok(2, "read", 1), *ok(3, "read", 2)
    )
    assert verdict.outcome is Outcome.INVALID and verdict.failed_key == "x"
    result = verdict.keys["x"]
    assert [(s.op.f, s.op.value, s.before, s.after) for s in result.linearization] == [
        ("write", 1, None, 1),
        ("write", 2, 1, 2),
    ]
    assert result.stuck is not None and (result.stuck.f, result.stuck.value) == ("read", 1)
    assert [op for op, _ in result.candidates] == [result.stuck]
    assert "not possible in state 2" in result.candidates[0][1]
    assert "process 2 read -> 1" in verdict.explain()


def test_read_concurrent_with_a_write_may_see_either_value() -> None:
    for seen in (None, 1):
        assert valid(
            "register",
            (0, "invoke", "write", 1),
            (1, "invoke", "read", None),
            (1, "ok", "read", seen),
            (0, "ok", "write", 1),
        )


def test_lost_write() -> None:
    # The write was acknowledged, then a read that began after it sees the old value.
    assert not valid("register", *ok(0, "write", 1), *ok(0, "write", 2), *ok(1, "read", 1))
    assert not valid("register", *ok(0, "write", 1), *ok(1, "read", None))


def test_failed_write_did_not_happen() -> None:
    rows = [*ok(0, "write", 1), (1, "invoke", "write", 2), (1, "fail", "write", 2)]
    assert valid("register", *rows, *ok(2, "read", 1))
    assert not valid("register", *rows, *ok(2, "read", 2))
    assert check("register", *rows).keys["x"].pruned == {1: "failed: did not happen"}


def test_info_write_may_or_may_not_happen_but_only_once() -> None:
    rows = [*ok(0, "write", 1), (1, "invoke", "write", 2), (1, "info", "write", 2)]
    assert valid("register", *rows, *ok(2, "read", 1))  # never happened
    assert valid("register", *rows, *ok(2, "read", 2))  # happened, even after its info
    assert valid("register", *rows, *ok(2, "read", 1), *ok(2, "read", 2))  # happened late
    assert not valid("register", *rows, *ok(2, "read", 2), *ok(2, "read", 1))  # not undone


def test_open_invoke_at_the_end_is_indeterminate() -> None:
    assert valid("register", *ok(0, "write", 1), (1, "invoke", "write", 2), *ok(2, "read", 2))


def test_info_write_cannot_take_effect_before_its_invoke() -> None:
    assert not valid(
        "register", *ok(0, "read", 2), (1, "invoke", "write", 2), (1, "info", "write", 2)
    )


def test_concurrent_cas_only_one_succeeds() -> None:
    start = ok(0, "write", 0)
    both = [(1, "invoke", "cas", [0, 1]), (2, "invoke", "cas", [0, 2])]
    assert not valid("register", *start, *both, (1, "ok", "cas", [0, 1]), (2, "ok", "cas", [0, 2]))
    assert valid("register", *start, *both, (1, "ok", "cas", [0, 1]), (2, "fail", "cas", [0, 2]))
    chained = [(1, "invoke", "cas", [0, 1]), (2, "invoke", "cas", [1, 2])]
    assert valid(
        "register",
        *start,
        *chained,
        (2, "ok", "cas", [1, 2]),
        (1, "ok", "cas", [0, 1]),
        *ok(3, "read", 2),
    )


def test_ok_cas_needs_its_expected_value() -> None:
    assert not valid("register", *ok(0, "write", 5), *ok(1, "cas", [4, 6]))
    assert valid("register", *ok(1, "cas", [None, 6]), *ok(2, "read", 6))  # null: only if absent


def test_info_cas() -> None:
    rows = [*ok(0, "write", 0), (1, "invoke", "cas", [0, 1]), (1, "info", "cas", [0, 1])]
    assert valid("register", *rows, *ok(2, "read", 1))
    assert valid("register", *rows, *ok(2, "read", 0), *ok(2, "read", 1))
    assert not valid("register", *rows, *ok(2, "read", 1), *ok(2, "read", 0))
    # Once the register moved on, the cas cannot have succeeded.
    assert not valid("register", *rows, *ok(2, "write", 5), *ok(2, "read", 5), *ok(2, "read", 1))


def test_info_reads_are_dropped() -> None:
    rows = [*ok(0, "write", 1), (1, "invoke", "read", None), (1, "info", "read", None)]
    result = check("register", *rows).keys["x"]
    assert result.outcome is Outcome.VALID
    assert result.pruned == {1: "indeterminate read: constrains nothing"}


def test_unobserved_info_writes_are_pruned() -> None:
    rows = [*ok(0, "write", 1), (1, "invoke", "write", 9), (1, "info", "write", 9)]
    result = check("register", *rows, *ok(2, "read", 1)).keys["x"]
    assert result.pruned == {1: "indeterminate, and no operation observes what it wrote"}


def test_keys_are_checked_independently() -> None:
    verdict = check(
        "register",
        *ok(0, "write", 1, "a"),
        *ok(0, "write", 1, "b"),
        *ok(1, "read", 1, "a"),
        *ok(1, "read", None, "b"),  # lost write on b only
    )
    assert verdict.outcome is Outcome.INVALID
    assert {k: r.outcome for k, r in verdict.keys.items()} == {
        "a": Outcome.VALID,
        "b": Outcome.INVALID,
    }
    assert verdict.summary() == {
        "valid": False,
        "keys": 2,
        "ops": 4,
        "seconds": verdict.summary()["seconds"],
        "failed_key": "b",
    }


def test_empty_history_is_valid() -> None:
    verdict = check_history([], "register")
    assert verdict.valid and verdict.summary()["keys"] == 0


# --- kv ------------------------------------------------------------------------------------------


def test_kv_append_to_absent_key_and_put() -> None:
    assert valid("kv", *ok(0, "append", "a"), *ok(0, "get", "a"))
    assert valid("kv", *ok(0, "put", "p"), *ok(0, "append", "a"), *ok(1, "get", "pa"))
    assert not valid("kv", *ok(0, "put", "p"), *ok(0, "append", "a"), *ok(1, "get", "a"))
    assert not valid("kv", *ok(0, "put", "p"), *ok(1, "get", None))


def test_kv_append_order() -> None:
    seq = [*ok(0, "append", "a"), *ok(1, "append", "b")]
    assert valid("kv", *seq, *ok(2, "get", "ab"))
    assert not valid("kv", *seq, *ok(2, "get", "ba"))
    both = [
        (0, "invoke", "append", "a"),
        (1, "invoke", "append", "b"),
        (0, "ok", "append", "a"),
        (1, "ok", "append", "b"),
    ]
    assert valid("kv", *both, *ok(2, "get", "ba"))
    assert valid("kv", *both, *ok(2, "get", "ab"))
    assert not valid("kv", *both, *ok(2, "get", "ba"), *ok(3, "get", "ab"))  # one order only
    assert not valid("kv", *both, *ok(2, "get", "a"))  # b was acknowledged before the get


def test_kv_info_append() -> None:
    rows = [*ok(0, "put", "p"), (1, "invoke", "append", "x"), (1, "info", "append", "x")]
    assert valid("kv", *rows, *ok(2, "get", "p"), *ok(2, "get", "px"))
    assert not valid("kv", *rows, *ok(2, "get", "px"), *ok(2, "get", "pxx"))  # at most once


def test_kv_invalid_key_reports_what_came_next() -> None:
    verdict = check(
        "kv",
        *ok(0, "append", "a"),
        *ok(1, "append", "b"),
        *ok(1, "append", "c"),
        *ok(2, "get", "acb"),
    )
    result = verdict.keys["x"]
    assert result.outcome is Outcome.INVALID
    assert [s.after for s in result.linearization] == ["a", "ab", "abc"]
    assert result.stuck is not None and result.stuck.value == "acb"


# --- time limit --------------------------------------------------------------------------------


def test_time_limit_gives_unknown() -> None:
    history = simulate(random.Random(1), "register", ops=50, processes=5, keys=3)
    verdict = check_history(history, "register", timeout=1e-9)
    assert verdict.outcome is Outcome.UNKNOWN and not verdict.valid
    assert verdict.summary()["valid"] == "unknown"
    assert "time limit" in verdict.explain()


def test_history_parsed_for_another_model_is_refused() -> None:
    from jepsen_lite import build_history, get_model

    history = build_history(events(*ok(0, "get", "a")), get_model("kv"))
    with pytest.raises(ValueError, match="parsed for model 'kv'"):
        check_history(history, "register")


def test_explanation_is_bounded() -> None:
    rows = [
        row for k in range(8) for row in [*ok(0, "write", 1, f"k{k}"), *ok(1, "read", 2, f"k{k}")]
    ]
    verdict = check("register", *rows)
    text = verdict.explain(max_keys=3)
    assert text.count("not linearizable;") == 3
    assert text.endswith("... and 5 more keys not linearizable")
