"""Parsing and validation: well-formed histories pair up, malformed ones name line and reason."""

from __future__ import annotations

import json

import pytest
from jepsen_lite import HistoryError, RegisterModel, build_history, get_model, parse_jsonl

REGISTER = RegisterModel()


def line(process: int, type: str, f: str, value: object, time: int, key: str = "x") -> str:
    event = {"process": process, "type": type, "f": f, "key": key, "value": value, "time": time}
    return json.dumps(event)


GOOD = [
    line(0, "invoke", "write", 1, 0),
    line(1, "invoke", "read", None, 0),  # equal times are fine
    line(0, "ok", "write", 1, 5),
    line(1, "info", "read", None, 6),
    line(2, "invoke", "cas", [1, 2], 7),
    line(2, "fail", "cas", [1, 2], 8),
    line(3, "invoke", "write", 3, 9),  # never completes: open to the end
]


def test_pairs_invokes_with_completions() -> None:
    history = parse_jsonl(GOOD, REGISTER)
    assert history.events == 7
    assert [(op.process, op.f, op.status) for op in history.ops] == [
        (0, "write", "ok"),
        (1, "read", "info"),
        (2, "cas", "fail"),
        (3, "write", "info"),
    ]
    write, read, cas, open_write = history.ops
    assert (write.invoke_index, write.complete_index, write.invoke_line, write.complete_line) == (
        0,
        2,
        1,
        3,
    )
    assert cas.value == (1, 2)
    assert open_write.complete_index is None and open_write.complete_line is None
    assert read.value is None


def test_read_value_comes_from_the_completion() -> None:
    history = parse_jsonl(
        [line(0, "invoke", "read", None, 0), line(0, "ok", "read", 7, 1)], REGISTER
    )
    assert history.ops[0].value == 7


def test_blank_lines_are_skipped_but_counted() -> None:
    with pytest.raises(HistoryError) as e:
        parse_jsonl([GOOD[0], "", "   ", "{"], REGISTER)
    assert e.value.line == 4


def test_events_from_python_are_numbered_from_one() -> None:
    events = [json.loads(GOOD[0]), {"process": 0}]
    with pytest.raises(HistoryError) as e:
        build_history(events, REGISTER)
    assert (e.value.line, e.value.reason) == (2, "missing field 'type'")


def test_by_key_groups_in_invoke_order() -> None:
    history = parse_jsonl(
        [
            line(0, "invoke", "write", 1, 0, key="b"),
            line(1, "invoke", "write", 2, 0, key="a"),
            line(2, "invoke", "write", 3, 0, key="b"),
        ],
        REGISTER,
    )
    assert {k: [op.value for op in ops] for k, ops in history.by_key().items()} == {
        "a": [2],
        "b": [1, 3],
    }


MALFORMED = [
    ("bad json", ["{not json"], 1, "invalid JSON"),
    (
        "nan",
        ['{"process": 0, "type": "invoke", "f": "write", "key": "x", "value": NaN, "time": 0}'],
        1,
        "NaN is not a valid JSON number",
    ),
    ("not an object", ["[1, 2]"], 1, "must be a JSON object"),
    ("missing field", ['{"process": 0, "type": "invoke"}'], 1, "missing field 'f'"),
    (
        "process type",
        [line(0, "invoke", "read", None, 0).replace('"process": 0', '"process": "a"')],
        1,
        "'process' must be an integer",
    ),
    ("unknown type", [line(0, "begin", "read", None, 0)], 1, "unknown type 'begin'"),
    ("unknown f", [line(0, "invoke", "get", None, 0)], 1, "unknown f 'get' for model register"),
    (
        "key type",
        [line(0, "invoke", "read", None, 0).replace('"key": "x"', '"key": 3')],
        1,
        "'key' must be a string",
    ),
    (
        "time type",
        [line(0, "invoke", "read", None, 0).replace('"time": 0', '"time": 1.5')],
        1,
        "'time' must be an integer",
    ),
    (
        "decreasing time",
        [line(0, "invoke", "read", None, 5), line(0, "ok", "read", 1, 4)],
        2,
        "time 4 is before the previous event's time 5",
    ),
    (
        "completion without invoke",
        [line(0, "ok", "read", 1, 0)],
        1,
        "ok for process 0, which has no open invoke",
    ),
    (
        "invoke while open",
        [line(0, "invoke", "read", None, 0), line(0, "invoke", "read", None, 1)],
        2,
        "process 0 invokes while its invoke on line 1 is still open",
    ),
    (
        "invoke after info",
        [
            line(0, "invoke", "write", 1, 0),
            line(0, "info", "write", 1, 1),
            line(0, "invoke", "read", None, 2),
        ],
        3,
        "process 0 invokes after it ended in info on line 2",
    ),
    (
        "completion after info",
        [
            line(0, "invoke", "write", 1, 0),
            line(0, "info", "write", 1, 1),
            line(0, "ok", "write", 1, 2),
        ],
        3,
        "ok for process 0, which ended in info on line 2",
    ),
    (
        "completion of another f",
        [line(0, "invoke", "write", 1, 0), line(0, "ok", "read", 1, 1)],
        2,
        "completion f 'read' differs from its invoke's 'write'",
    ),
    (
        "completion of another key",
        [line(0, "invoke", "write", 1, 0), line(0, "ok", "write", 1, 1, key="y")],
        2,
        "completion key 'y' differs",
    ),
    (
        "completion of another value",
        [line(0, "invoke", "write", 1, 0), line(0, "ok", "write", 2, 1)],
        2,
        "completion value 2 differs from its invoke's 1",
    ),
    ("write without value", [line(0, "invoke", "write", None, 0)], 1, "write invoke: the value"),
    ("boolean value", [line(0, "invoke", "write", True, 0)], 1, "must be an integer or a string"),
    ("float value", [line(0, "invoke", "write", 1.5, 0)], 1, "must be an integer or a string"),
    ("cas not a pair", [line(0, "invoke", "cas", [1], 0)], 1, "must be [expected, new]"),
    ("cas new null", [line(0, "invoke", "cas", [1, None], 0)], 1, "new must be"),
    (
        "read of a list",
        [line(0, "invoke", "read", None, 0), line(0, "ok", "read", [1], 1)],
        2,
        "read ok: the value must be",
    ),
]


@pytest.mark.parametrize(
    ("lines", "at", "reason"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_histories_are_rejected_with_line_and_reason(
    lines: list[str], at: int, reason: str
) -> None:
    with pytest.raises(HistoryError) as e:
        parse_jsonl(lines, REGISTER)
    assert e.value.line == at
    assert reason in e.value.reason
    assert str(e.value).startswith(f"line {at}: ")


@pytest.mark.parametrize(
    ("f", "value", "reason"),
    [
        ("put", 3, "must be a string"),
        ("append", None, "must be a string"),
        ("read", None, "unknown f 'read' for model kv"),
    ],
)
def test_kv_value_shapes(f: str, value: object, reason: str) -> None:
    with pytest.raises(HistoryError) as e:
        parse_jsonl([line(0, "invoke", f, value, 0)], get_model("kv"))
    assert reason in e.value.reason


def test_unknown_model_name() -> None:
    with pytest.raises(ValueError, match="unknown model 'queue'"):
        get_model("queue")
