"""Histories: parse, validate and pair events into operations.

What lives here: the event format (JSON lines of ``{"process", "type", "f", "key", "value",
"time"}``), `HistoryError` (line number and reason), and the pairing of each invoke with its
completion into an `Operation`. Real-time order is the order of events in the history: event
``i`` happened before event ``j`` iff ``i < j`` (``time`` must be non-decreasing and is kept for
display only, so equal times are still ordered by position).

What must not: any model semantics beyond the *shape* of values (that is `OpShapes`, supplied
by the model), any search or pruning (that is the checker's). A malformed history is always
rejected here with the line and the reason; nothing downstream ever sees one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, TypeAlias, cast

__all__ = [
    "EVENT_TYPES",
    "History",
    "HistoryError",
    "OpShapes",
    "OpValue",
    "Operation",
    "Scalar",
    "Status",
    "build_history",
    "parse_jsonl",
]

Scalar: TypeAlias = int | str
#: What an operation carries: a read result or written value, ``[expected, new]`` for a cas
#: (as a tuple), or ``None`` (a read of an absent key, or an unknown read result).
OpValue: TypeAlias = Scalar | tuple[Scalar | None, Scalar] | None
EventType: TypeAlias = Literal["invoke", "ok", "fail", "info"]
Status: TypeAlias = Literal["ok", "fail", "info"]

EVENT_TYPES: tuple[EventType, ...] = ("invoke", "ok", "fail", "info")
_FIELDS = ("process", "type", "f", "key", "value", "time")


class HistoryError(ValueError):
    """A malformed history. `line` is 1-based (the event's number when events are not lines)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


class OpShapes(Protocol):
    """What the parser needs to know about a model: its functions and the shape of values."""

    @property
    def name(self) -> str: ...

    @property
    def functions(self) -> frozenset[str]: ...

    @property
    def read_functions(self) -> frozenset[str]: ...

    def parse_value(self, f: str, type: EventType, raw: object) -> OpValue:
        """The value of an event of this `f` and `type`; raise ValueError(reason) if malformed."""
        ...


@dataclass(frozen=True, slots=True)
class Operation:
    """One invoke paired with its completion.

    `value` is what the model needs: for a read-like `f` that completed ``ok`` it is the value
    read; otherwise it is the invoke's value. `status` is ``info`` also for an invoke still open
    at the end of the history (then `complete_index` is None). Info operations are open to the
    end of the history whatever `complete_index` says; `complete_index` is kept for display.
    """

    id: int  # position among the history's operations, in invoke order
    process: int
    key: str
    f: str
    value: OpValue
    status: Status
    invoke_index: int  # 0-based position of the invoke among the history's events
    complete_index: int | None
    invoke_line: int
    complete_line: int | None
    invoke_time: int
    complete_time: int | None


@dataclass(frozen=True, slots=True)
class History:
    """A validated history: its operations in invoke order and the number of events."""

    model: str
    ops: tuple[Operation, ...]
    events: int

    def by_key(self) -> dict[str, list[Operation]]:
        """Operations grouped per key, each group in invoke order, keys sorted."""
        groups: dict[str, list[Operation]] = {}
        for op in self.ops:
            groups.setdefault(op.key, []).append(op)
        return {key: groups[key] for key in sorted(groups)}


def parse_jsonl(lines: Iterable[str], shapes: OpShapes) -> History:
    """Parse a JSON-lines history. Blank lines are skipped but still counted for line numbers."""

    def records() -> Iterator[tuple[int, object]]:
        for line, text in enumerate(lines, 1):
            if not text.strip():
                continue
            try:
                obj = _DECODER.decode(text)
            except json.JSONDecodeError as e:
                raise HistoryError(line, f"invalid JSON: {e.msg} (column {e.colno})") from None
            except ValueError as e:
                raise HistoryError(line, f"invalid JSON: {e}") from None
            yield line, obj

    return _build(records(), shapes)


def build_history(events: Iterable[Mapping[str, object]], shapes: OpShapes) -> History:
    """Validate already-decoded events; errors name the 1-based event number as the line."""
    return _build(enumerate(events, 1), shapes)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a valid JSON number")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


@dataclass(frozen=True, slots=True)
class _Event:
    process: int
    type: EventType
    f: str
    key: str
    value: OpValue
    time: int


@dataclass(frozen=True, slots=True)
class _Open:
    op_id: int
    line: int
    index: int
    event: _Event


def _event(line: int, obj: object, shapes: OpShapes, last_time: int | None) -> _Event:
    """One event's fields, checked one by one."""
    if not isinstance(obj, Mapping):
        raise HistoryError(line, "an event must be a JSON object")
    for name in _FIELDS:
        if name not in obj:
            raise HistoryError(line, f"missing field {name!r}")
    process = obj["process"]
    if type(process) is not int:
        raise HistoryError(line, f"'process' must be an integer, not {process!r}")
    etype = obj["type"]
    if etype not in EVENT_TYPES:
        expected = ", ".join(EVENT_TYPES)
        raise HistoryError(line, f"unknown type {etype!r} (expected one of {expected})")
    f = obj["f"]
    if not isinstance(f, str) or f not in shapes.functions:
        expected = ", ".join(sorted(shapes.functions))
        raise HistoryError(
            line, f"unknown f {f!r} for model {shapes.name} (expected one of {expected})"
        )
    key = obj["key"]
    if not isinstance(key, str):
        raise HistoryError(line, f"'key' must be a string, not {key!r}")
    time = obj["time"]
    if type(time) is not int:
        raise HistoryError(line, f"'time' must be an integer, not {time!r}")
    if last_time is not None and time < last_time:
        raise HistoryError(line, f"time {time} is before the previous event's time {last_time}")
    try:
        value = shapes.parse_value(f, cast(EventType, etype), obj["value"])
    except ValueError as e:
        raise HistoryError(line, f"{f} {etype}: {e}") from None
    return _Event(process, cast(EventType, etype), f, key, value, time)


def _build(records: Iterable[tuple[int, object]], shapes: OpShapes) -> History:
    """Pair invokes with completions, enforcing one open op per process and no op after info."""
    open_by_process: dict[int, _Open] = {}
    retired: dict[int, int] = {}  # process -> line of the info that ended it
    ops: dict[int, Operation] = {}
    last_time: int | None = None
    index = -1
    for index, (line, obj) in enumerate(records):
        event = _event(line, obj, shapes, last_time)
        last_time = event.time
        process = event.process
        if event.type == "invoke":
            if process in retired:
                raise HistoryError(
                    line,
                    f"process {process} invokes after it ended in info on line "
                    f"{retired[process]} (a client continues under a new process id)",
                )
            if process in open_by_process:
                raise HistoryError(
                    line,
                    f"process {process} invokes while its invoke on line "
                    f"{open_by_process[process].line} is still open",
                )
            op_id = len(ops) + len(open_by_process)
            open_by_process[process] = _Open(op_id, line, index, event)
            continue

        pending = open_by_process.pop(process, None)
        if pending is None:
            why = (
                f"which ended in info on line {retired[process]}"
                if process in retired
                else "which has no open invoke"
            )
            raise HistoryError(line, f"{event.type} for process {process}, {why}")
        ops[pending.op_id] = _operation(pending, line, index, event, shapes)
        if event.type == "info":
            retired[process] = line

    for pending in open_by_process.values():  # open at the end: may or may not have happened
        invoke = pending.event
        ops[pending.op_id] = Operation(
            id=pending.op_id,
            process=invoke.process,
            key=invoke.key,
            f=invoke.f,
            value=invoke.value,
            status="info",
            invoke_index=pending.index,
            complete_index=None,
            invoke_line=pending.line,
            complete_line=None,
            invoke_time=invoke.time,
            complete_time=None,
        )
    return History(shapes.name, tuple(ops[i] for i in range(len(ops))), index + 1)


def _operation(pending: _Open, line: int, index: int, done: _Event, shapes: OpShapes) -> Operation:
    """The operation of an invoke and its completion, which must agree with it."""
    invoke = pending.event
    for field, mine, theirs in (("f", done.f, invoke.f), ("key", done.key, invoke.key)):
        if mine != theirs:
            raise HistoryError(
                line,
                f"completion {field} {mine!r} differs from its invoke's {theirs!r} "
                f"(line {pending.line})",
            )
    if invoke.f in shapes.read_functions:
        value = done.value if done.type == "ok" else invoke.value
    elif done.value is not None and done.value != invoke.value:
        raise HistoryError(
            line,
            f"completion value {_show(done.value)} differs from its invoke's "
            f"{_show(invoke.value)} (line {pending.line})",
        )
    else:
        value = invoke.value
    assert done.type != "invoke"
    return Operation(
        id=pending.op_id,
        process=invoke.process,
        key=invoke.key,
        f=invoke.f,
        value=value,
        status=done.type,
        invoke_index=pending.index,
        complete_index=index,
        invoke_line=pending.line,
        complete_line=line,
        invoke_time=invoke.time,
        complete_time=done.time,
    )


def _show(value: OpValue) -> str:
    return json.dumps(list(value) if isinstance(value, tuple) else value)
