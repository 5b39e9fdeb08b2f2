"""Replicas agree: the same entries in the same order give identical views and answers,
whatever happens around them (restarts, snapshots), and no replica ever reads a clock."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcluster.kv import (
    ExpireSweep,
    KvCommand,
    KvResult,
    KvStateMachine,
    MemoryKvView,
    Noop,
    Op,
    SetFlag,
    encode_command,
)
from kvcluster.kv.sessions import check_sessions

try:
    from kvcluster.sharding import key_slot
except ImportError:  # pragma: no cover

    def key_slot(key: bytes | str) -> int:
        return 0


SETTINGS = {"session_ttl_ms": 500, "max_sessions": 3, "session_sweep_limit": 2}
KEYS = [b"a", b"b", b"{a}c", b"n", b""]
VALUES = [b"", b"x", b"1", b"-5", b"9223372036854775807", b"abc"]

keys = st.sampled_from(KEYS)
values = st.sampled_from(VALUES)
client_commands = st.builds(
    KvCommand,
    op=st.sampled_from([*Op, 0, 11]),
    key=keys,
    value=values,
    expected=st.none() | values,
    ttl_ms=st.sampled_from([0, 0, 1, 50, 400, -1]),
    delta=st.sampled_from([1, -1, 7, 2**63 - 1, -(2**63)]),
    flags=st.sampled_from([0, 0, 1, 2, 4, 5, 6, 3, 8]),
    client_id=st.sampled_from([0, 0, 1, 2, 3, 4]),
    seq=st.integers(0, 5),
    now_ms=st.integers(0, 3000),  # leaders' clocks disagree: now_ms may go backwards
)
entries = st.one_of(
    client_commands.map(encode_command),
    client_commands.map(encode_command),
    client_commands.map(encode_command),
    st.builds(ExpireSweep, st.integers(0, 3000), st.lists(keys, max_size=3).map(tuple)).map(
        encode_command
    ),
    st.builds(Noop, st.integers(0, 3000)).map(encode_command),
    st.binary(max_size=12),  # garbage: malformed entries
)


@settings(max_examples=150, deadline=None)
@given(
    log=st.lists(entries, max_size=60),
    events=st.lists(st.sampled_from(["restart", "snapshot"]), max_size=60),
)
def test_replicas_applying_the_same_log_agree(log: list[bytes], events: list[str]) -> None:
    a_sm, a_view = KvStateMachine(key_slot, **SETTINGS), MemoryKvView()
    b_sm, b_view = KvStateMachine(key_slot, **SETTINGS), MemoryKvView()
    for index, data in enumerate(log, start=1):
        # Replica b restarts (a new state machine object) or installs a snapshot (a copy of
        # its own view, as a follower would receive it) between entries: it must not matter.
        event = events[index - 1] if index - 1 < len(events) else None
        if event == "restart":
            b_sm = KvStateMachine(key_slot, **SETTINGS)
        elif event == "snapshot":
            b_view = b_view.copy()
        assert a_sm.apply(a_view, index, data) == b_sm.apply(b_view, index, data)
        check_sessions(a_view, a_view.meta)
    assert a_view.dump() == b_view.dump()
    for key in KEYS:
        for op in (Op.GET, Op.TTL):
            cmd = KvCommand(op, key)
            assert a_sm.read(a_view, cmd, 1234) == b_sm.read(b_view, cmd, 1234)


def test_applying_never_reads_a_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_clock(*args: object) -> float:
        raise AssertionError("the state machine read a clock")

    for name in ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "process_time"):
        monkeypatch.setattr(time, name, no_clock)
    sm = KvStateMachine(key_slot)
    view = MemoryKvView()
    results: list[KvResult] = []
    for i, cmd in enumerate(
        [
            KvCommand(Op.SET, b"a", b"1", ttl_ms=100, client_id=1, seq=1, now_ms=1000),
            KvCommand(Op.INCRBY, b"a", delta=2, client_id=1, seq=2, now_ms=1050),
            KvCommand(Op.EXPIRE, b"a", ttl_ms=10, now_ms=1060),
            KvCommand(Op.TTL, b"a", now_ms=1065),
            KvCommand(Op.CAS, b"a", b"z", expected=b"3", flags=SetFlag.KEEPTTL, now_ms=1066),
        ],
        start=1,
    ):
        results.append(sm.apply(view, i, encode_command(cmd)))
    results.append(sm.apply(view, 9, encode_command(ExpireSweep(2000, (b"a",)))))
    results.append(sm.read(view, KvCommand(Op.GET, b"a"), 0))
    assert [r.int_value for r in results] == [0, 3, 1, 5, 0, 1, 0]
