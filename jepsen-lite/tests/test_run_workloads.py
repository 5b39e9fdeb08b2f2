"""Workloads against an in-memory client (a fake with kvcluster's semantics), the append made
of get + cas, key picking, and the counter's checker."""

from __future__ import annotations

import random
from typing import Any

import pytest
from jepsen_lite import check_history
from jepsen_lite.workloads import (
    APPEND_TRIES,
    WORKLOADS,
    CounterWorkload,
    DidNotHappen,
    KVWorkload,
    Op,
    RegisterWorkload,
    check_counter,
    is_reader,
    make_workload,
    pick_keys,
)


class MemoryClient:
    """kvcluster.Client's get/set/cas/incr on a dict (values stored as bytes, as the store
    does). `moves` simulates another client writing between a get and the next cas."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.moves = 0
        self.cas_calls = 0

    @staticmethod
    def _b(value: int | str | bytes) -> bytes:
        return value if isinstance(value, bytes) else str(value).encode()

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def set(self, key: str, value: int | str) -> bool:
        self.data[key] = self._b(value)
        return True

    def cas(self, key: str, expected: int | str | bytes | None, new: int | str) -> bool:
        self.cas_calls += 1
        if self.moves:
            self.moves -= 1
            self.data[key] = self.data.get(key, b"") + b"[other]"
        current = self.data.get(key)
        if (None if expected is None else self._b(expected)) != current:
            return False
        self.data[key] = self._b(new)
        return True

    def incr(self, key: str, amount: int = 1) -> int:
        value = int(self.data.get(key, b"0")) + amount
        self.data[key] = str(value).encode()
        return value


class Unknown(Exception):
    """Stands for kvcluster's OutcomeUnknown."""


def run_sequentially(name: str, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """One client at a time against a MemoryClient: the history must be linearizable."""
    rng = random.Random(seed)
    workload = make_workload(name, ["a", "b", "c"])
    client = MemoryClient()
    events: list[dict[str, Any]] = []
    for i in range(n):
        process = i % 4
        op = workload.next_op(rng, reader=is_reader(process))
        events.append(
            {"process": process, "type": "invoke", "f": op.f, "key": op.key, "value": op.value}
        )
        res = workload.execute(client, op)
        events.append(
            {"process": process, "type": res.type, "f": op.f, "key": op.key, "value": res.value}
            | ({"result": res.result} if res.result is not None else {})
        )
    for i, e in enumerate(events):
        e["time"] = i
    return events


@pytest.mark.parametrize("name", ["register", "kv"])
def test_sequential_histories_are_linearizable(name: str) -> None:
    workload = make_workload(name, ["a"])
    assert workload.model is not None
    events = run_sequentially(name, 400)
    verdict = check_history(events, workload.model, timeout=30)
    assert verdict.valid, verdict.explain()
    fs = {e["f"] for e in events}
    assert fs == set(workload.write_functions) | ({"read"} if name == "register" else {"get"})


def test_sequential_counter_history_is_valid() -> None:
    events = run_sequentially("counter", 300)
    for key in ("a", "b", "c"):  # final reads
        n = len(events)
        value = int(
            sum(1 for e in events if e["type"] == "ok" and e["f"] == "incr" and e["key"] == key)
        )
        events += [
            {"process": 99, "type": "invoke", "f": "read", "key": key, "value": None, "time": n},
            {"process": 99, "type": "ok", "f": "read", "key": key, "value": value, "time": n + 1},
        ]
        events[-2]["final"] = True
    result = check_counter(events)
    assert result.outcome == "valid", result.explain()
    assert all(k.final == k.acked == k.attempted for k in result.keys.values())


def test_readers_only_read() -> None:
    rng = random.Random(1)
    for name in WORKLOADS:
        workload = make_workload(name, ["k"])
        assert {workload.next_op(rng, reader=True).f for _ in range(50)} <= {"read", "get"}
    assert [i for i in range(9) if is_reader(i)] == [2, 5, 8]


def test_register_cas_expects_the_last_value_seen() -> None:
    workload = RegisterWorkload(["k"])
    client = MemoryClient()
    assert workload.execute(client, Op("write", "k", 7)).type == "ok"
    ops = [workload.next_op(random.Random(s)) for s in range(40)]
    cas = [op for op in ops if op.f == "cas"]
    assert cas and all(isinstance(op.value, list) and op.value[0] == 7 for op in cas)
    assert workload.execute(client, Op("cas", "k", [7, 8])).type == "ok"
    assert workload.execute(client, Op("cas", "k", [7, 9])).type == "fail"
    assert workload.execute(client, Op("read", "k", None)).value == 8


def test_append_is_one_cas_from_the_value_it_read() -> None:
    workload = KVWorkload(["k"])
    client = MemoryClient()
    assert workload.execute(client, Op("append", "k", "[1]")).type == "ok"  # absent: cas-if-absent
    assert workload.execute(client, Op("append", "k", "[2]")).type == "ok"
    assert client.data["k"] == b"[1][2]"
    client.moves = 1  # another client appends between our get and our cas: we retry
    assert workload.execute(client, Op("append", "k", "[3]")).type == "ok"
    assert client.data["k"] == b"[1][2][other][3]"
    client.moves = APPEND_TRIES  # we lose every race: nothing of ours was appended
    before = client.cas_calls
    res = workload.execute(client, Op("append", "k", "[4]"))
    assert res.type == "fail" and b"[4]" not in client.data["k"]
    assert client.cas_calls - before == APPEND_TRIES


def test_append_reports_a_failed_get_as_did_not_happen_and_lets_a_cas_error_through() -> None:
    workload = KVWorkload(["k"])

    class GetFails(MemoryClient):
        def get(self, key: str) -> bytes | None:
            raise RuntimeError("no leader")

    class CasUnknown(MemoryClient):
        def cas(self, key: str, expected: int | str | bytes | None, new: int | str) -> bool:
            self.cas_calls += 1
            raise Unknown("timed out")

    with pytest.raises(DidNotHappen):
        workload.execute(GetFails(), Op("append", "k", "[1]"))
    client = CasUnknown()
    with pytest.raises(Unknown):  # the runner records it info; it is never retried
        workload.execute(client, Op("append", "k", "[1]"))
    assert client.cas_calls == 1


def test_counter_incr_records_the_new_value() -> None:
    workload = CounterWorkload(["c"])
    client = MemoryClient()
    res = workload.execute(client, Op("incr", "c", 1))
    assert (res.type, res.value, res.result) == ("ok", 1, 1)
    assert workload.execute(client, Op("read", "c", None)).value == 1
    assert workload.execute(client, Op("read", "other", None)).value == 0


def test_pick_keys_spreads_over_groups() -> None:
    keys = pick_keys("reg", [1, 2, 3], 2, lambda k: int(k.split(":")[1]) % 3 + 1)
    assert keys == ["reg:0", "reg:3", "reg:1", "reg:4", "reg:2", "reg:5"]
    with pytest.raises(ValueError, match="no keys found"):
        pick_keys("reg", [1, 9], 1, lambda k: 1)


def counter_history(*rows: tuple[int, str, str, object]) -> list[dict[str, object]]:
    """Events from (process, type, f, value-or-result) rows; incr completions carry the
    new value as `result`; a read invoked by process 9 is a final read."""
    events: list[dict[str, object]] = []
    for i, (process, type_, f, x) in enumerate(rows):
        e: dict[str, object] = {"process": process, "type": type_, "f": f, "key": "c", "time": i}
        if f == "incr":
            e["value"] = 1
            if type_ == "ok":
                e["result"] = x
        else:
            e["value"] = x if type_ == "ok" else None
            if process == 9 and type_ == "invoke":
                e["final"] = True
        events.append(e)
    return events


def test_counter_final_value_between_acknowledged_and_attempted() -> None:
    base = [
        (1, "invoke", "incr", None),
        (1, "ok", "incr", 1),
        (2, "invoke", "incr", None),
        (2, "info", "incr", None),  # may or may not have happened
        (3, "invoke", "incr", None),
        (3, "fail", "incr", None),  # did not happen
    ]
    for final, outcome in ((1, "valid"), (2, "valid"), (0, "invalid"), (3, "invalid")):
        result = check_counter(
            counter_history(*base, (9, "invoke", "read", None), (9, "ok", "read", final))
        )
        assert result.outcome == outcome, (final, result.explain())
        assert (result.keys["c"].acked, result.keys["c"].attempted) == (1, 2)
    assert check_counter(counter_history(*base)).outcome == "unknown"  # no final read


def test_counter_reads_and_incr_results_are_bounded_and_distinct() -> None:
    stale = counter_history(
        (1, "invoke", "incr", None),
        (1, "ok", "incr", 1),
        (2, "invoke", "read", None),
        (2, "ok", "read", 0),  # began after an acknowledged increment
        (9, "invoke", "read", None),
        (9, "ok", "read", 1),
    )
    result = check_counter(stale)
    assert result.outcome == "invalid" and "outside [1, 1]" in result.explain()
    lost = counter_history(
        (1, "invoke", "incr", None),
        (2, "invoke", "incr", None),
        (1, "ok", "incr", 1),
        (2, "ok", "incr", 1),  # two increments both saw 0
        (9, "invoke", "read", None),
        (9, "ok", "read", 1),
    )
    result = check_counter(lost)
    assert result.outcome == "invalid" and "an increment was lost" in result.explain()
