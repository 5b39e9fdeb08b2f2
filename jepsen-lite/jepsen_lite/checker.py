"""The checker: split a history per key, prune, search each key, combine into a verdict.

What lives here: `check_history` (the Python API the CLI, the ``run`` command and kvcluster's
tests call), `check_key`, `prune`, and the results `Verdict` and `KeyResult`.

Linearizability is P-compositional (Herlihy & Wing 1990): a history is linearizable iff each
key's sub-history is, so keys are searched one at a time, smallest first, under one deadline.
Before searching a key, ops that cannot matter are pruned (`prune`; the README says why each
rule is sound); the search itself lives in `search`.

What must not: I/O (the CLI and the report do that), model semantics (the models own them),
the search's internals.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from jepsen_lite.history import History, Operation, build_history
from jepsen_lite.models import Model, get_model
from jepsen_lite.search import Step, search

__all__ = ["KeyResult", "Outcome", "Step", "Verdict", "check_history", "check_key", "prune"]

#: Step budget of the second search that lengthens the prefix shown for an invalid key.
EXPLAIN_STEPS = 50_000


class Outcome(StrEnum):
    VALID = "valid"
    INVALID = "invalid"
    UNKNOWN = "unknown"  # only when the time limit ran out


@dataclass(frozen=True, slots=True)
class KeyResult:
    """The search's answer for one key.

    `linearization` is a witness when valid; when invalid (or unknown) it is the longest
    linearizable prefix found, after which none of `candidates` (the ops that could come next
    in real-time order, each with the reason) could be placed, and `stuck` is the op whose
    completion was reached unplaced. `pruned` maps the id of each op left out of the search to
    why. `ops` holds every op of the key, failed and pruned ones included.
    """

    key: str
    outcome: Outcome
    ops: tuple[Operation, ...]
    pruned: Mapping[int, str]
    linearization: tuple[Step, ...]
    stuck: Operation | None = None
    candidates: tuple[tuple[Operation, str], ...] = ()
    states: int = 0  # distinct (linearized set, state) configurations explored
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """The checker's answer for a whole history. `valid` is True only if proven linearizable."""

    outcome: Outcome
    model: str
    keys: Mapping[str, KeyResult]  # in key order
    ops: int  # operations in the history, failed and pruned ones included
    seconds: float
    history: History = field(repr=False)

    @property
    def valid(self) -> bool:
        return self.outcome is Outcome.VALID

    @property
    def failed_key(self) -> str | None:
        """The first key (in key order) found not linearizable, if any."""
        return next((k for k, r in self.keys.items() if r.outcome is Outcome.INVALID), None)

    def summary(self) -> dict[str, object]:
        """The CLI's last line: ``{"valid", "keys", "ops", "seconds", "failed_key"}``."""
        valid: bool | str = "unknown" if self.outcome is Outcome.UNKNOWN else self.valid
        return {
            "valid": valid,
            "keys": len(self.keys),
            "ops": self.ops,
            "seconds": round(self.seconds, 3),
            "failed_key": self.failed_key,
        }

    def explain(self, max_keys: int = 5) -> str:
        """A few human lines: for the first `max_keys` invalid keys, the longest prefix and
        what could not come next; how many keys ran out of time."""
        model = get_model(self.model)
        lines: list[str] = []
        invalid = [r for r in self.keys.values() if r.outcome is Outcome.INVALID]
        for result in invalid[:max_keys]:
            placed = len(result.linearization)
            state = result.linearization[-1].after if placed else model.init()
            lines.append(
                f"key {result.key!r}: not linearizable; longest linearizable prefix has "
                f"{placed} of {len(result.ops) - len(result.pruned)} ops, ending in state "
                f"{model.describe_state(state)}"
            )
            for op, why in result.candidates:
                mark = "stuck: " if op is result.stuck else "also:  "
                lines.append(f"  {mark}{_describe(model, op)}: {why}")
        if len(invalid) > max_keys:
            lines.append(f"... and {len(invalid) - max_keys} more keys not linearizable")
        unknown = [k for k, r in self.keys.items() if r.outcome is Outcome.UNKNOWN]
        if unknown:
            shown = ", ".join(repr(k) for k in unknown[:max_keys])
            more = f" and {len(unknown) - max_keys} more" if len(unknown) > max_keys else ""
            lines.append(f"unknown (time limit reached) for {len(unknown)} keys: {shown}{more}")
        return "\n".join(lines)


def _describe(model: Model, op: Operation) -> str:
    if op.complete_line is None:
        where = f"line {op.invoke_line}, never completed"
    else:
        where = f"lines {op.invoke_line}-{op.complete_line}"
    return f"process {op.process} {model.describe_op(op)} ({op.status}, {where})"


def check_history(
    history: History | Iterable[Mapping[str, object]],
    model: str | Model,
    timeout: float | None = None,
) -> Verdict:
    """Check a history (a parsed `History`, or decoded events as dicts) against `model`.

    Raises `HistoryError` for a malformed history. `timeout` (seconds, None: no limit) bounds
    the whole check; keys are searched smallest first, and any key not finished in time is
    ``unknown``. One invalid key makes the history invalid, whatever else ran out of time.
    """
    m = get_model(model)
    if not isinstance(history, History):
        history = build_history(history, m)
    elif history.model != m.name:
        raise ValueError(f"history was parsed for model {history.model!r}, not {m.name!r}")
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    groups = history.by_key()
    results: dict[str, KeyResult] = {}
    for key in sorted(groups, key=lambda k: (len(groups[k]), k)):
        results[key] = check_key(m, key, groups[key], deadline)
    outcomes = {r.outcome for r in results.values()}
    if Outcome.INVALID in outcomes:
        outcome = Outcome.INVALID
    elif Outcome.UNKNOWN in outcomes:
        outcome = Outcome.UNKNOWN
    else:
        outcome = Outcome.VALID
    return Verdict(
        outcome,
        m.name,
        {k: results[k] for k in groups},
        len(history.ops),
        time.monotonic() - start,
        history,
    )


def prune(model: Model, ops: Sequence[Operation]) -> dict[int, str]:
    """Ops of one key the search can leave out, with the reason; see the README."""
    pruned: dict[int, str] = {}
    for op in ops:
        if op.status == "fail":
            pruned[op.id] = "failed: did not happen"
        elif op.status == "info" and op.f in model.read_functions:
            pruned[op.id] = "indeterminate read: constrains nothing"
    rest = [op for op in ops if op.id not in pruned]
    for op_id in model.removable_info_ops(rest):
        pruned[op_id] = "indeterminate, and no operation observes what it wrote"
    return pruned


def check_key(
    model: Model, key: str, ops: Sequence[Operation], deadline: float | None = None
) -> KeyResult:
    """Prune and search one key's operations (all of the same key)."""
    start = time.monotonic()
    ops = sorted(ops, key=lambda op: op.id)
    if deadline is not None and start > deadline:
        return KeyResult(key, Outcome.UNKNOWN, tuple(ops), {}, ())
    pruned = prune(model, ops)
    kept = [op for op in ops if op.id not in pruned]
    det = [op for op in kept if op.status == "ok"]
    info = [op for op in kept if op.status == "info"]
    found = search(model, det, info, deadline=deadline)
    if found.outcome == "invalid":
        # The lookahead stops a prefix as soon as a later read becomes impossible, which is
        # sound but shows the failure early. A bounded search without it usually places more.
        plain = search(
            model, det, info, deadline=deadline, max_steps=EXPLAIN_STEPS, lookahead=False
        )
        if plain.outcome == "valid":  # pragma: no cover - would be a bug in the lookahead
            raise AssertionError(f"key {key!r}: the lookahead refuted a linearizable history")
        if plain.stuck is not None and len(plain.linearization) >= len(found.linearization):
            found = replace(plain, outcome="invalid", states=found.states)
    elif found.outcome == "unknown":  # a prefix, but nothing proven stuck
        found = replace(found, stuck=None, candidates=())
    return KeyResult(
        key,
        Outcome(found.outcome),
        tuple(ops),
        pruned,
        found.linearization,
        found.stuck,
        found.candidates,
        found.states,
        time.monotonic() - start,
    )
