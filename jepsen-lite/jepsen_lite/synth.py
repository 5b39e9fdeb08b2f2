"""Synthetic histories: a sequential model run under random concurrency.

What lives here: `simulate`, which returns the events of a linearizable history (dicts in the
history format), deterministically from an injected `random.Random`. Clients (one open
operation each) invoke operations on random keys; each operation takes effect atomically at one
random moment between its invoke and its completion, and completes ``ok`` with what it saw. Some
give up first: ``fail`` (never took effect; also a cas whose expected value did not match), or
``info`` (the client continues under a new process id), in which case the operation took
effect before, or takes effect at some later moment, or never. Used by the property tests and
the benchmark script.

What must not: global randomness, clocks, I/O.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from jepsen_lite.models import State

__all__ = ["simulate"]

Event = dict[str, object]


@dataclass(slots=True)
class _Op:
    process: int
    f: str
    key: str
    value: object  # the invoke's value, in its JSON form
    applied: bool = False
    failed: bool = False  # a cas whose expected value did not match: it completes fail
    result: object = None


def simulate(
    rng: random.Random,
    model: str = "register",
    *,
    ops: int = 100,
    processes: int = 5,
    keys: int = 1,
    info: float = 0.1,
    fail: float = 0.05,
    values: int = 5,
) -> list[Event]:
    """Events of a linearizable history of `ops` operations by `processes` concurrent clients.

    `info` and `fail` are the chances that an operation ends that way; `values` bounds the
    register values written (small values make reads ambiguous, hence the search harder).
    """
    if model not in ("register", "kv"):
        raise ValueError(f"unknown model {model!r}")
    key_names = [f"k{i}" for i in range(keys)]
    state: dict[str, State] = {}
    events: list[Event] = []
    clients: list[_Op | None] = [None] * processes
    pids = list(range(processes))
    next_pid = processes
    ghosts: list[_Op] = []  # ended in info, may still take effect
    clock = 0
    issued = 0

    def emit(op: _Op, type: str, value: object) -> None:
        nonlocal clock
        clock += rng.randrange(3)  # non-decreasing, with ties
        events.append(
            {
                "process": op.process,
                "type": type,
                "f": op.f,
                "key": op.key,
                "value": value,
                "time": clock,
            }
        )

    def apply(op: _Op) -> None:
        current = state.get(op.key)
        if op.f in ("read", "get"):
            op.result = current
        elif op.f in ("write", "put"):
            state[op.key] = op.value  # type: ignore[assignment]  # scalars by construction
        elif op.f == "append":
            assert isinstance(op.value, str)
            state[op.key] = op.value if current is None else f"{current}{op.value}"
        else:  # cas
            assert isinstance(op.value, list)
            expected, new = op.value
            if current == expected:
                state[op.key] = new
            else:
                op.failed = True
        op.applied = True

    def new_op(process: int) -> _Op:
        key = rng.choice(key_names)
        r = rng.random()
        if model == "register":
            if r < 0.4:
                return _Op(process, "read", key, None)
            if r < 0.75:
                return _Op(process, "write", key, rng.randrange(values))
            expected = None if rng.random() < 0.1 else rng.randrange(values)
            return _Op(process, "cas", key, [expected, rng.randrange(values)])
        if r < 0.4:
            return _Op(process, "get", key, None)
        if r < 0.6:
            return _Op(process, "put", key, f"p{rng.randrange(values)}.")
        return _Op(process, "append", key, f"a{issued}.")

    while issued < ops or any(clients):
        if ghosts and rng.random() < 0.05:
            apply(ghosts.pop(rng.randrange(len(ghosts))))
            continue
        c = rng.randrange(processes)
        op = clients[c]
        if op is None:
            if issued < ops:
                op = clients[c] = new_op(pids[c])
                issued += 1
                emit(op, "invoke", op.value)
            continue
        if not op.applied:
            r = rng.random()
            if r < fail:
                emit(op, "fail", op.value)
                clients[c] = None
            elif r < fail + info:
                emit(op, "info", op.value)
                if rng.random() < 0.5:
                    ghosts.append(op)
                clients[c], pids[c], next_pid = None, next_pid, next_pid + 1
            else:
                apply(op)
            continue
        if op.failed:
            emit(op, "fail", op.value)
            clients[c] = None
        elif rng.random() < info:
            emit(op, "info", op.value)
            clients[c], pids[c], next_pid = None, next_pid, next_pid + 1
        else:
            emit(op, "ok", op.result if op.f in ("read", "get") else op.value)
            clients[c] = None
    return events
