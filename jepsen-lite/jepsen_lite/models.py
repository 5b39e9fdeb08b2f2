"""Sequential specifications that histories are linearized against.

What lives here: one class per model (``register``, ``kv``). A model is a pure, *per-key*
sequential object: the checker splits a history per key first (P-compositionality), so a model
only ever sees one key's operations and its state is that key's value (``None``: absent). Each
model says which functions it has, the shape of their values (`parse_value`), how an operation
changes the state (`step`), and facts about its semantics that the checker may use to search
less: which indeterminate ops no one can observe (`removable_info_ops`), which states no read
can tell apart and which ops are interchangeable (`for_search`), and when a read can no longer
see its value (`lookahead`).

What must not: I/O, clocks, randomness, or any part of the search itself (`search` owns it).
States must be hashable and compared with ``==``: the search caches (linearized set, state).
Every search hook must be sound on its own: answering less (no merging, no pruning) is always
allowed, answering wrong makes the checker wrong.

`step` answers "could this operation have completed ``ok`` in this state, and what state
follows?". For an ``info`` operation the search only places it where it changes the state; a
placement that leaves the state alone is the same as placing it at the end of the history, which
an info operation (open to the end) always allows.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from bisect import bisect_left
from collections.abc import Callable, Collection, Hashable, Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from jepsen_lite.history import EventType, Operation, OpValue, Scalar

__all__ = [
    "MODELS",
    "UNSEEN",
    "KVModel",
    "Model",
    "RegisterModel",
    "SearchView",
    "State",
    "Unseen",
    "get_model",
]


class Unseen:
    """The state after an op whose value no read of the history sees, until the next reset.

    Searching with it instead of the real value merges states that no remaining read can tell
    apart (say, the orders of appends that no get ever shows). It equals nothing but itself."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSEEN"


UNSEEN = Unseen()
State: TypeAlias = Scalar | Unseen | None
ReadCheck: TypeAlias = Callable[[State, int], bool]
StepFn: TypeAlias = Callable[[State, Operation], tuple[bool, State]]


@dataclass(frozen=True, slots=True)
class SearchView:
    """How the search sees one key's operations (`Model.for_search`).

    `step` is `Model.step`, except that it may map states no read of the key can tell apart to
    one (`UNSEEN`); whenever it answers a concrete state, that state is the one `step` gives.
    Ops with equal `kind` have the same effect under `step` in every state. `blind` ops
    always succeed and leave a state that does not depend on the one before.
    """

    step: StepFn
    kind: Callable[[Operation], Hashable]
    blind: Callable[[Operation], bool]


def _same_f_and_value(op: Operation) -> Hashable:
    return (op.f, op.value)


class Model(ABC):
    """A per-key sequential specification; see the module docstring."""

    name: ClassVar[str]
    functions: ClassVar[frozenset[str]]
    #: Functions that never change the state: an ``info`` one constrains nothing and is dropped.
    read_functions: ClassVar[frozenset[str]]
    #: Functions that always succeed and whose new state ignores the old one (blind writes).
    blind_functions: ClassVar[frozenset[str]]

    def init(self) -> State:
        """The state of a key before any operation: absent."""
        return None

    @abstractmethod
    def parse_value(self, f: str, type: EventType, raw: object) -> OpValue:
        """The value of one event; raise ValueError(reason) if it has the wrong shape."""

    @abstractmethod
    def step(self, state: State, op: Operation) -> tuple[bool, State]:
        """Whether `op` can complete ok in `state`, and the state after it."""

    def for_search(self, ops: Sequence[Operation]) -> SearchView:
        """How the search should see `ops` (one key's): by default `step`, ops of the same
        `f` and value as interchangeable, and `blind_functions` as blind writes."""
        blind = self.blind_functions
        return SearchView(self.step, _same_f_and_value, lambda op: op.f in blind)

    @abstractmethod
    def removable_info_ops(self, ops: Sequence[Operation]) -> set[int]:
        """Ids of info ops whose effect no operation of `ops` could ever observe.

        Sound to drop: in any linearization that places such an op, no read sees the value it
        leaves behind before some later operation overwrites it, so the op can be moved to the
        end of the history (which an info op allows) without changing any result.
        """

    @abstractmethod
    def lookahead(self, ops: Sequence[tuple[int, Operation]]) -> Callable[[Operation], ReadCheck]:
        """For the search's lookahead. Given a key's searched ops with their bits in the
        search's linearized set, return a function that, for an ok read, builds a `ReadCheck`:
        ``check(state, linearized)`` answers whether the read could still see its value if the
        state is now `state` and the ops of `linearized` are placed (all others are still to
        come, in some order; only those invoked before the read returned can come before it).

        It is a necessary condition only: the search refuses any state a check says False to,
        so True is always a safe answer."""

    def describe_op(self, op: Operation) -> str:
        """A short human form, e.g. ``write 3`` or ``read -> nil``."""
        if op.f in self.read_functions:
            shown = show_value(op.value) if op.status == "ok" else "?"
            return f"{op.f} -> {shown}"
        if isinstance(op.value, tuple):
            return f"{op.f} {show_value(op.value[0])} -> {show_value(op.value[1])}"
        return f"{op.f} {show_value(op.value)}"

    def describe_state(self, state: State) -> str:
        return "(unseen)" if isinstance(state, Unseen) else show_value(state)

    def describe_value(self, value: OpValue) -> str:
        return show_value(value)


def show_value(value: OpValue) -> str:
    """JSON for a value, ``nil`` for absent."""
    if value is None:
        return "nil"
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return json.dumps(value)


def _scalar(raw: object, what: str, *, nullable: bool) -> Scalar | None:
    if raw is None and nullable:
        return None
    if (type(raw) is int) or isinstance(raw, str):
        return raw
    allowed = "an integer or a string" + (" or null" if nullable else "")
    raise ValueError(f"{what} must be {allowed}, not {json.dumps(raw, default=repr)}")


def _string(raw: object, what: str, *, nullable: bool) -> str | None:
    if raw is None and nullable:
        return None
    if isinstance(raw, str):
        return raw
    allowed = "a string" + (" or null" if nullable else "")
    raise ValueError(f"{what} must be {allowed}, not {json.dumps(raw, default=repr)}")


class RegisterModel(Model):
    """One register per key. ``read`` (value: what was read, null = absent), ``write v``,
    ``cas [expected, new]`` (expected null = "only if absent"). Values are integers or strings
    (never booleans or floats, whose equality with integers would blur what was read)."""

    name = "register"
    functions = frozenset({"read", "write", "cas"})
    read_functions = frozenset({"read"})
    blind_functions = frozenset({"write"})

    def parse_value(self, f: str, type: EventType, raw: object) -> OpValue:
        if f == "read":
            return _scalar(raw, "the value", nullable=True)
        if f == "write":
            return _scalar(raw, "the value", nullable=type != "invoke")
        if raw is None and type != "invoke":
            return None
        if not isinstance(raw, list | tuple) or len(raw) != 2:
            raise ValueError(
                f"the value must be [expected, new], not {json.dumps(raw, default=repr)}"
            )
        expected = _scalar(raw[0], "expected", nullable=True)
        new = _scalar(raw[1], "new", nullable=False)
        assert new is not None
        return (expected, new)

    def step(self, state: State, op: Operation) -> tuple[bool, State]:
        f = op.f
        if f == "read":
            return state == op.value, state
        if f == "write":
            return True, op.value  # type: ignore[return-value]  # a write's value is a scalar
        expected, new = _cas_pair(op)
        if state == expected:
            return True, new
        return False, state

    def lookahead(self, ops: Sequence[tuple[int, Operation]]) -> Callable[[Operation], ReadCheck]:
        # Only a write or cas of the value read, still to come, can bring the register to it.
        writers = _Groups()
        for bit, op in ops:
            if op.f in ("write", "cas"):
                writers.add(_written(op), op.invoke_index, bit)

        def read_check(read: Operation) -> ReadCheck:
            value, mask = read.value, writers.before(read.value, _returned(read))
            return lambda state, linearized: state == value or bool(mask & ~linearized)

        return read_check

    def for_search(self, ops: Sequence[Operation]) -> SearchView:
        # A value no read returns and no cas expects: once written, nothing can match the
        # register until the next write or successful cas, whatever the value was. So such
        # writes and cas are searched as blind writes of UNSEEN, all interchangeable.
        observed = _register_observed(ops, frozenset())
        unseen = {op.id for op in ops if op.f != "read" and _written(op) not in observed}
        step = self.step

        def search_step(state: State, op: Operation) -> tuple[bool, State]:
            ok, new_state = step(state, op)
            if ok and op.id in unseen:
                return True, UNSEEN
            return ok, new_state

        def kind(op: Operation) -> Hashable:
            if op.id not in unseen:
                return (op.f, op.value)
            return ("unseen cas", _cas_pair(op)[0]) if op.f == "cas" else UNSEEN

        def blind(op: Operation) -> bool:
            return op.f == "write"

        return SearchView(search_step, kind, blind)

    def removable_info_ops(self, ops: Sequence[Operation]) -> set[int]:
        # A value is observed if an ok read returned it or a (possibly happened) cas expects
        # it. An info write/cas whose written value is never observed is removable. Removing an
        # info cas can unobserve its `expected`, so repeat until nothing changes.
        removed: set[int] = set()
        while True:
            observed = _register_observed(ops, removed)
            more = {
                op.id
                for op in ops
                if op.status == "info"
                and op.f != "read"
                and op.id not in removed
                and _written(op) not in observed
            }
            if not more:
                return removed
            removed |= more


def _register_observed(ops: Sequence[Operation], removed: Collection[int]) -> set[OpValue]:
    """Values an ok read returned or a cas (not failed, not `removed`) expects."""
    observed: set[OpValue] = set()
    for op in ops:
        if op.f == "read" and op.status == "ok":
            observed.add(op.value)
        elif op.f == "cas" and op.status != "fail" and op.id not in removed:
            observed.add(_cas_pair(op)[0])
    return observed


def _written(op: Operation) -> OpValue:
    """The value a write or cas writes."""
    return _cas_pair(op)[1] if op.f == "cas" else op.value


def _cas_pair(op: Operation) -> tuple[Scalar | None, Scalar]:
    assert isinstance(op.value, tuple), op
    return op.value


class KVModel(Model):
    """A string per key. ``get`` (null = absent), ``put s``, ``append s`` (appending to an
    absent key yields ``s``). Values are strings."""

    name = "kv"
    functions = frozenset({"get", "put", "append"})
    read_functions = frozenset({"get"})
    blind_functions = frozenset({"put"})

    def parse_value(self, f: str, type: EventType, raw: object) -> OpValue:
        nullable = f == "get" or type != "invoke"
        return _string(raw, "the value", nullable=nullable)

    def step(self, state: State, op: Operation) -> tuple[bool, State]:
        f = op.f
        if f == "get":
            return state == op.value, state
        if f == "put":
            return True, op.value  # type: ignore[return-value]  # a put's value is a string
        if state is None:
            return True, op.value  # type: ignore[return-value]
        return True, state + op.value  # type: ignore[operator]  # kv states are strings

    def lookahead(self, ops: Sequence[tuple[int, Operation]]) -> Callable[[Operation], ReadCheck]:
        # A get of v sees v = start + appends, where start is the current state (if v starts
        # with it), or nothing (an absent key), or a put still to come; each append that
        # follows it is still to come, so the rest of v must be tiled by unplaced appends.
        puts, appends = _Groups(), _Groups()
        for bit, op in ops:
            if op.f == "put":
                puts.add(op.value, op.invoke_index, bit)
            elif op.f == "append":
                appends.add(op.value, op.invoke_index, bit)

        def read_check(read: Operation) -> ReadCheck:
            value, end = read.value, _returned(read)
            if not isinstance(value, str):
                return lambda state, linearized: state is None  # absent for good once written
            # tiles[i]: (length, mask) of the appends that could write value[i:i + length]
            lengths = appends.lengths(len(value))
            tiles = [
                [
                    (n, m)
                    for n in lengths
                    if n <= len(value) - i and (m := appends.before(value[i : i + n], end))
                ]
                for i in range(len(value))
            ]
            backwards = [i for i in reversed(range(len(value))) if tiles[i]]
            relevant = 0
            for i in backwards:
                for _, m in tiles[i]:
                    relevant |= m
            starts = [
                (n, m) for n in puts.lengths(len(value)) if (m := puts.before(value[:n], end))
            ]
            memo: dict[int, int] = {}

            def tileable_from(free: int) -> int:
                """Bit i set: value[i:] can be written by appends of `free` (unplaced)."""
                found = memo.get(free)
                if found is None:
                    found = 1 << len(value)
                    for i in backwards:
                        for n, m in tiles[i]:
                            if m & free and found >> (i + n) & 1:
                                found |= 1 << i
                                break
                    if len(memo) > 4096:
                        memo.clear()
                    memo[free] = found
                return found

            def check(state: State, linearized: int) -> bool:
                if state == value:
                    return True
                if state is None:
                    if tileable_from(~linearized & relevant) & 1:
                        return True
                elif (
                    isinstance(state, str)
                    and value.startswith(state)
                    and tileable_from(~linearized & relevant) >> len(state) & 1
                ):
                    return True
                for n, m in starts:
                    if m & ~linearized and tileable_from(~linearized & relevant) >> n & 1:
                        return True
                return False

            return check

        return read_check

    def removable_info_ops(self, ops: Sequence[Operation]) -> set[int]:
        return {op.id for op in _kv_unseen(ops) if op.status == "info"}

    def for_search(self, ops: Sequence[Operation]) -> SearchView:
        # After a put or append that no get sees, no get can match until the next put: such
        # ops are searched as blind writes of UNSEEN, all interchangeable.
        unseen = {op.id for op in _kv_unseen(ops)}
        step = self.step

        def search_step(state: State, op: Operation) -> tuple[bool, State]:
            if op.id in unseen:
                return True, UNSEEN
            if state is UNSEEN and op.f != "put":
                return op.f == "append", state
            return step(state, op)

        def kind(op: Operation) -> Hashable:
            return UNSEEN if op.id in unseen else (op.f, op.value)

        return SearchView(search_step, kind, lambda op: op.f == "put" or op.id in unseen)


def _kv_unseen(ops: Sequence[Operation]) -> list[Operation]:
    """Puts and appends whose effect no ok get of `ops` sees.

    After `put v`, every get until the next put sees a string starting with v; after
    `append a`, one containing a. Observed strings are joined with NUL: a match across a joint
    only keeps an op that could have been dropped, never the reverse."""
    joined = "\0" + "\0".join(
        op.value for op in ops if op.f == "get" and op.status == "ok" and isinstance(op.value, str)
    )
    return [
        op
        for op in ops
        if isinstance(op.value, str)
        and (
            (op.f == "put" and "\0" + op.value not in joined)
            or (op.f == "append" and op.value not in joined)
        )
    ]


def _returned(read: Operation) -> int:
    assert read.complete_index is not None, read
    return read.complete_index


class _Groups:
    """Ops grouped by the value they write, each group in invoke order with cumulative masks."""

    def __init__(self) -> None:
        self._members: dict[Hashable, list[tuple[int, int]]] = {}
        self._index: dict[Hashable, tuple[list[int], list[int]]] | None = None
        self._lengths: list[int] = []

    def add(self, value: Hashable, position: int, bit: int) -> None:
        self._members.setdefault(value, []).append((position, bit))
        self._index = None

    def before(self, value: Hashable, position: int) -> int:
        """The bits of the ops of group `value` invoked before `position`."""
        found = self._frozen().get(value)
        if found is None:
            return 0
        positions, masks = found
        return masks[bisect_left(positions, position)]

    def lengths(self, at_most: int) -> list[int]:
        """The distinct lengths of the (string) values grouped, up to `at_most`."""
        self._frozen()
        return [n for n in self._lengths if n <= at_most]

    def _frozen(self) -> dict[Hashable, tuple[list[int], list[int]]]:
        if self._index is None:
            self._index = {}
            for value, members in self._members.items():
                members.sort()
                masks = [0]
                for _, bit in members:
                    masks.append(masks[-1] | bit)
                self._index[value] = ([p for p, _ in members], masks)
            self._lengths = sorted({len(v) for v in self._members if isinstance(v, str)})
        return self._index


MODELS: dict[str, type[Model]] = {m.name: m for m in (RegisterModel, KVModel)}


def get_model(model: str | Model) -> Model:
    """A model instance from its name (``register``, ``kv``) or the instance itself."""
    if isinstance(model, Model):
        return model
    try:
        return MODELS[model]()
    except KeyError:
        raise ValueError(f"unknown model {model!r} (expected one of {', '.join(MODELS)})") from None
