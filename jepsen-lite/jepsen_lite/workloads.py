"""Workloads: what the clients do during a run, and how each operation is recorded.

What lives here: `Workload` and its three kinds (`WORKLOADS`): ``register``, ``kv`` and
``counter``; `pick_keys` (hot keys spread over the shard groups); `check_counter` (the
counter's own checker); `Op` and `Result`, and `DidNotHappen`.

A workload draws operations (`Workload.next_op`, from the caller's `random.Random`) and
carries them out on a client (`Workload.execute`, through the small `KvClient` protocol that
``kvcluster.Client`` satisfies). `execute` returns a `Result` when it knows what happened, and
raises when it does not finish: the runner records the op ``info`` if it was a write that may
have happened (``kvcluster.errors.OutcomeUnknown``), ``fail`` otherwise; `DidNotHappen` says
"certainly no effect" explicitly.

Readers: every third client (`is_reader`) only reads. A client is redirected only by a request
its node refuses, so one that never writes keeps reading from whichever node it last knew as a
group's leader, through leader changes and partitions, while the writers move on to the new
leader. That is the client a node serving reads it should not (a deposed leader, a lagging
follower) shows a stale value to, so the mix makes such bugs visible.

- ``register`` (model ``register``): read, write and cas on a few hot keys per shard group.
  Written values are unique integers; a cas expects the last value any client saw there.
- ``kv`` (model ``kv``): get, put and append. The store has no APPEND, so an append is a
  linearizable get of the current value ``v`` followed by ``cas(key, v, v + token)`` (``v``
  absent: cas "only if absent"). The append takes effect exactly when, and only if, its cas
  does: a cas from ``v`` to ``v + token`` *is* "append token" at the moment it applies, and a
  cas that does not apply changes nothing. So: cas applied -> ``ok``; the value moved under
  it -> get and cas again, at most `APPEND_TRIES` times in all, then ``fail``; a cas whose
  outcome is unknown -> ``info`` (never retried: two might apply); the get failing -> ``fail``.
  Puts and appends write unique tokens (``<p12>``, ``[13]``), so a get shows which happened.
- ``counter`` (no linearizability model; `check_counter` judges it): ``incr`` by 1 and ``read``
  on one key per shard group. Each ok read, and each ok incr's returned value, must lie between
  the increments acknowledged before it began and those attempted (not failed) before it
  ended; ok incrs must return distinct values; the final read (after every fault is healed)
  must lie between all acknowledged and all attempted increments.

What must not: I/O (the client does it, the runner records), clocks, global randomness, or any
knowledge of faults.
"""

from __future__ import annotations

import itertools
import random
from abc import ABC, abstractmethod
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = [
    "APPEND_TRIES",
    "WORKLOADS",
    "CounterCheck",
    "CounterKey",
    "CounterWorkload",
    "DidNotHappen",
    "KVWorkload",
    "KvClient",
    "Op",
    "RegisterWorkload",
    "Result",
    "Workload",
    "check_counter",
    "is_reader",
    "make_workload",
    "pick_keys",
]

APPEND_TRIES = 3
JsonValue = int | str | list[int | str | None] | None


class KvClient(Protocol):
    """The part of ``kvcluster.Client`` the workloads use."""

    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: int | str) -> bool: ...

    def cas(self, key: str, expected: int | str | bytes | None, new: int | str) -> bool: ...

    def incr(self, key: str, amount: int = 1) -> int: ...


@dataclass(frozen=True, slots=True)
class Op:
    """An operation as invoked: the history's ``f``, ``key`` and invoke ``value``."""

    f: str
    key: str
    value: JsonValue


@dataclass(frozen=True, slots=True)
class Result:
    """What happened, when it is known. `value` is the completion's value (what a read saw;
    a write's own value). `answered`: the key's leader answered (a cas that did not apply
    counts: the write path worked), used for availability. `result`: an incr's new value."""

    type: Literal["ok", "fail"]
    value: JsonValue
    answered: bool = True
    result: int | None = None


class DidNotHappen(Exception):
    """The operation certainly had no effect (e.g. the get before an append's cas failed)."""


class Workload(ABC):
    """One workload kind; see the module docstring. Instances are shared by every client
    thread (the little shared state they keep is only a hint for choosing values)."""

    name: str
    model: str | None  # the checker's model, None if judged by `check_counter`
    key_prefix: str
    keys_per_group: int
    write_functions: frozenset[str]

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("a workload needs at least one key")
        self.keys = list(keys)
        self._unique = itertools.count(1)

    def unique(self) -> int:
        return next(self._unique)  # atomic under the GIL

    @abstractmethod
    def next_op(self, rng: random.Random, *, reader: bool = False) -> Op:
        """The next operation of a client; a `reader` only reads."""

    @abstractmethod
    def execute(self, client: KvClient, op: Op) -> Result: ...

    @abstractmethod
    def final_op(self, key: str) -> Op:
        """The read every key gets once all faults are healed."""

    def is_write(self, op: Op) -> bool:
        return op.f in self.write_functions


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", errors="replace")


def _register_value(raw: bytes | None) -> int | str | None:
    text = _text(raw)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return text  # not something this workload wrote: the checker will say so


class RegisterWorkload(Workload):
    name = "register"
    model = "register"
    key_prefix = "reg"
    keys_per_group = 2
    write_functions = frozenset({"write", "cas"})

    def __init__(self, keys: Sequence[str]) -> None:
        super().__init__(keys)
        self._seen: dict[str, int | str | None] = {}

    def next_op(self, rng: random.Random, *, reader: bool = False) -> Op:
        key = rng.choice(self.keys)
        r = rng.random()
        if reader or r < 0.5:
            return Op("read", key, None)
        if r < 0.75:
            return Op("write", key, self.unique())
        return Op("cas", key, [self._seen.get(key), self.unique()])

    def execute(self, client: KvClient, op: Op) -> Result:
        if op.f == "read":
            value = _register_value(client.get(op.key))
            self._seen[op.key] = value
            return Result("ok", value)
        if op.f == "write":
            assert isinstance(op.value, int)
            done = client.set(op.key, op.value)
            if done:
                self._seen[op.key] = op.value
            return Result("ok" if done else "fail", op.value)
        assert isinstance(op.value, list)
        expected, new = op.value
        assert isinstance(new, int)
        if client.cas(op.key, expected, new):
            self._seen[op.key] = new
            return Result("ok", op.value)
        return Result("fail", op.value)  # expected did not match: it did not happen

    def final_op(self, key: str) -> Op:
        return Op("read", key, None)


class KVWorkload(Workload):
    name = "kv"
    model = "kv"
    key_prefix = "kv"
    keys_per_group = 2
    write_functions = frozenset({"put", "append"})

    def next_op(self, rng: random.Random, *, reader: bool = False) -> Op:
        key = rng.choice(self.keys)
        r = rng.random()
        if reader or r < 0.5:
            return Op("get", key, None)
        if r < 0.65:
            return Op("put", key, f"<p{self.unique()}>")
        return Op("append", key, f"[{self.unique()}]")

    def execute(self, client: KvClient, op: Op) -> Result:
        if op.f == "get":
            return Result("ok", _text(client.get(op.key)))
        assert isinstance(op.value, str)
        if op.f == "put":
            done = client.set(op.key, op.value)
            return Result("ok" if done else "fail", op.value)
        for _ in range(APPEND_TRIES):
            try:
                current = client.get(op.key)
            except Exception as e:  # no cas was sent: the append did not happen
                raise DidNotHappen(f"the get before the cas failed: {e!r}") from e
            new = (_text(current) or "") + op.value
            if client.cas(op.key, current, new):  # raises: the runner decides fail / info
                return Result("ok", op.value)
        return Result("fail", op.value)  # every cas lost a race: nothing was appended

    def final_op(self, key: str) -> Op:
        return Op("get", key, None)


class CounterWorkload(Workload):
    name = "counter"
    model = None
    key_prefix = "ctr"
    keys_per_group = 1
    write_functions = frozenset({"incr"})

    def next_op(self, rng: random.Random, *, reader: bool = False) -> Op:
        key = rng.choice(self.keys)
        read = reader or rng.random() < 0.3
        return Op("read", key, None) if read else Op("incr", key, 1)

    def execute(self, client: KvClient, op: Op) -> Result:
        if op.f == "read":
            raw = _register_value(client.get(op.key))
            return Result("ok", 0 if raw is None else raw)
        new = client.incr(op.key, 1)
        return Result("ok", 1, result=int(new))

    def final_op(self, key: str) -> Op:
        return Op("read", key, None)


WORKLOADS: dict[str, type[Workload]] = {
    w.name: w for w in (RegisterWorkload, KVWorkload, CounterWorkload)
}


def is_reader(client_index: int) -> bool:
    """Whether the client of this index (0-based) only reads: every third one."""
    return client_index % 3 == 2


def make_workload(name: str, keys: Sequence[str]) -> Workload:
    try:
        return WORKLOADS[name](keys)
    except KeyError:
        expected = ", ".join(WORKLOADS)
        raise ValueError(f"unknown workload {name!r} (expected one of {expected})") from None


def pick_keys(
    prefix: str, groups: Sequence[int], per_group: int, owner: Callable[[str], int | None]
) -> list[str]:
    """`per_group` keys owned by each of `groups` (``owner`` maps a key to its group), named
    ``prefix:N`` with the smallest N; in group order."""
    wanted = {g: per_group for g in groups}
    found: dict[int, list[str]] = {g: [] for g in groups}
    for n in itertools.count():
        if not any(wanted.values()):
            break
        if n > 100_000:
            raise ValueError(f"no keys found for groups {[g for g, k in wanted.items() if k]}")
        key = f"{prefix}:{n}"
        g = owner(key)
        if g is not None and wanted.get(g):
            found[g].append(key)
            wanted[g] -= 1
    return [k for g in groups for k in found[g]]


# -- the counter's checker -------------------------------------------------------------------


@dataclass(slots=True)
class CounterKey:
    """One counter key: increments acknowledged (ok), attempted (not failed: ok or info), the
    final read, and what was found wrong."""

    key: str
    acked: int = 0
    attempted: int = 0
    final: int | None = None
    reads: int = 0
    violations: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CounterCheck:
    """``outcome``: ``valid``, ``invalid``, or ``unknown`` (a key has no final read)."""

    outcome: Literal["valid", "invalid", "unknown"]
    keys: Mapping[str, CounterKey]

    def explain(self) -> str:
        lines = []
        for k in self.keys.values():
            final = "no final read" if k.final is None else f"final value {k.final}"
            ok = "ok" if k.final is not None and k.acked <= k.final <= k.attempted else "WRONG"
            lines.append(
                f"counter {k.key!r}: {final}; acknowledged {k.acked}, attempted {k.attempted} "
                f"({ok if k.final is not None else 'unknown'}); {k.reads} reads checked"
            )
            lines.extend(f"  {v}" for v in k.violations[:10])
            if len(k.violations) > 10:
                lines.append(f"  ... and {len(k.violations) - 10} more")
        return "\n".join(lines)


@dataclass(slots=True)
class _CounterOp:
    index: int
    f: str
    key: str
    delta: int
    type: str = "info"
    value: object = None
    result: object = None
    end: int | None = None
    final: bool = False


def check_counter(events: Iterable[Mapping[str, object]]) -> CounterCheck:
    """Judge a counter history (events in the history format; an ok ``incr`` carries its new
    value in ``result``; ``final: true`` marks the final reads). See the module docstring."""
    ops: list[_CounterOp] = []
    open_: dict[object, _CounterOp] = {}
    last_index = 0
    for i, e in enumerate(events):
        last_index = i
        if e.get("type") == "invoke":
            value = e.get("value")
            delta = value if isinstance(value, int) and e.get("f") == "incr" else 0
            op = _CounterOp(
                i, str(e.get("f")), str(e.get("key")), delta, final=bool(e.get("final"))
            )
            open_[e.get("process")] = op
            ops.append(op)
            continue
        op_or_none = open_.pop(e.get("process"), None)
        if op_or_none is None:
            continue
        op_or_none.type, op_or_none.end = str(e.get("type")), i
        op_or_none.value, op_or_none.result = e.get("value"), e.get("result")

    keys: dict[str, CounterKey] = {}
    incrs: dict[str, list[_CounterOp]] = {}
    for op in ops:
        keys.setdefault(op.key, CounterKey(op.key))
        if op.f == "incr" and op.type != "fail":
            incrs.setdefault(op.key, []).append(op)
    for key, k in keys.items():
        mine = incrs.get(key, [])
        k.acked = sum(op.delta for op in mine if op.type == "ok")
        k.attempted = sum(op.delta for op in mine)
        # lower: ok increments that ended before an op began; upper: non-failed increments
        # that began before it ended (prefix sums over event positions).
        acked = sorted((o.end, o.delta) for o in mine if o.type == "ok" and o.end is not None)
        acked_at, acked_sum = (
            [e for e, _ in acked],
            list(itertools.accumulate((d for _, d in acked), initial=0)),
        )
        begun_at, begun_sum = (
            [o.index for o in mine],
            list(itertools.accumulate((o.delta for o in mine), initial=0)),
        )
        seen_results: dict[int, int] = {}
        for op in ops:
            if op.key != key or op.type != "ok":
                continue
            end = op.end if op.end is not None else last_index + 1
            lower = acked_sum[bisect_left(acked_at, op.index)]
            upper = begun_sum[bisect_left(begun_at, end)]
            if op.f == "incr":
                got, what, lower = op.result, "incr returned", lower + op.delta
                if isinstance(got, int):
                    if got in seen_results:
                        k.violations.append(
                            f"incr (event {op.index + 1}) returned {got}, as did the incr of "
                            f"event {seen_results[got] + 1}: an increment was lost"
                        )
                    seen_results[got] = op.index
            else:
                got, what = op.value, "read"
                k.reads += 1
                if op.final and isinstance(got, int):
                    k.final = got
            if not isinstance(got, int):
                k.violations.append(f"{what} {got!r} (event {op.index + 1}) is not an integer")
            elif not lower <= got <= upper:
                k.violations.append(
                    f"{what} {got} (events {op.index + 1}-{end + 1}) outside [{lower}, {upper}]: "
                    f"acknowledged before it began, attempted before it ended"
                )
    if any(k.violations for k in keys.values()):
        outcome: Literal["valid", "invalid", "unknown"] = "invalid"
    elif any(k.final is None for k in keys.values()):
        outcome = "unknown"
    else:
        outcome = "valid"
    return CounterCheck(outcome, keys)
