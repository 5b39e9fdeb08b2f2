"""Exactly-once writes through client sessions; sessions expire and are evicted
deterministically, and all of it lives in the view."""

from __future__ import annotations

import pytest

from kvcluster.kv import (
    CorruptKvState,
    KvCommand,
    KvResult,
    KvStateMachine,
    MemoryKvView,
    Noop,
    Op,
    Status,
    encode_command,
)
from kvcluster.kv.sessions import check_sessions


class Replica:
    def __init__(self, **settings: int) -> None:
        self.sm = KvStateMachine(lambda k: 0, **settings)
        self.view = MemoryKvView()
        self.index = 0

    def apply(self, cmd: KvCommand | Noop) -> KvResult:
        self.index += 1
        result = self.sm.apply(self.view, self.index, encode_command(cmd))
        check_sessions(self.view, self.view.meta)
        return result

    def incr(self, client: int, seq: int, now: int = 0, key: bytes = b"n") -> KvResult:
        return self.apply(KvCommand(Op.INCRBY, key, delta=1, client_id=client, seq=seq, now_ms=now))

    def value(self, key: bytes = b"n") -> bytes | None:
        r = self.sm.read(self.view, KvCommand(Op.GET, key), 0)
        return r.value if r.status == Status.OK else None

    def client_ids(self) -> list[int]:
        return [s.client_id for s in self.sm.sessions(self.view)]


def test_a_retry_after_a_timeout_applies_once() -> None:
    r = Replica()
    set_v1 = KvCommand(Op.SET, b"k", b"v1", client_id=9, seq=1, now_ms=10)
    assert r.apply(set_v1).status == Status.OK
    # Another client changes the key; then client 9's retry of seq 1 (its answer was lost)
    # arrives. Applying it again would overwrite v2 with v1.
    r.apply(KvCommand(Op.SET, b"k", b"v2", now_ms=20))
    assert r.apply(set_v1._replace(now_ms=30)) == KvResult(Status.OK)
    assert r.value(b"k") == b"v2"


def test_incrby_retried_five_times_increments_once() -> None:
    r = Replica()
    answers = [r.incr(client=1, seq=1, now=t) for t in range(5)]
    assert answers == [KvResult(Status.OK, int_value=1)] * 5
    assert r.value() == b"1"
    assert r.incr(client=1, seq=2) == KvResult(Status.OK, int_value=2)


def test_without_a_session_a_retry_applies_again() -> None:
    r = Replica()
    r.incr(client=0, seq=0)
    r.incr(client=0, seq=0)
    assert r.value() == b"2"
    assert r.sm.session_count(r.view) == 0


def test_stale_sequence_is_invalid_and_changes_nothing() -> None:
    r = Replica()
    r.incr(client=1, seq=1)
    r.incr(client=1, seq=2)
    data_before = dict(r.view.data)
    result = r.incr(client=1, seq=1)
    assert result.status == Status.INVALID
    assert "stale sequence 1 (already answered" in result.error
    assert r.view.data == data_before
    assert r.incr(client=1, seq=2) == KvResult(Status.OK, int_value=2)  # still remembered


def test_sequence_numbers_may_skip() -> None:
    r = Replica()
    r.incr(client=1, seq=3)
    assert r.incr(client=1, seq=10) == KvResult(Status.OK, int_value=2)
    assert r.incr(client=1, seq=10) == KvResult(Status.OK, int_value=2)


def test_sessions_are_per_client() -> None:
    r = Replica()
    r.incr(client=1, seq=1)
    r.incr(client=2, seq=1)
    assert r.value() == b"2"


def test_every_kind_of_answer_is_remembered() -> None:
    r = Replica()
    r.apply(KvCommand(Op.SET, b"k", b"current"))
    cas = KvCommand(Op.CAS, b"k", b"new", expected=b"old", client_id=1, seq=1)
    first = r.apply(cas)
    assert first == KvResult(Status.NOT_APPLIED, b"current", 1)
    r.apply(KvCommand(Op.SET, b"k", b"old"))
    assert r.apply(cas) == first  # not applied again, although it would now succeed
    assert r.value(b"k") == b"old"

    bad = KvCommand(Op.EXPIRE, b"k", ttl_ms=0, client_id=2, seq=1)
    assert r.apply(bad).status == Status.INVALID
    assert r.apply(bad) == r.apply(bad)

    r.apply(KvCommand(Op.SET, b"s", b"text"))
    wrong = KvCommand(Op.INCRBY, b"s", delta=1, client_id=3, seq=1)
    assert r.apply(wrong).status == Status.WRONGTYPE
    r.apply(KvCommand(Op.SET, b"s", b"1"))
    assert r.apply(wrong).status == Status.WRONGTYPE


def test_seq_zero_with_a_client_id_is_invalid_and_opens_no_session() -> None:
    r = Replica()
    result = r.incr(client=5, seq=0)
    assert result.status == Status.INVALID
    assert r.value() is None
    assert r.sm.session_count(r.view) == 0


def test_reads_in_the_log_take_no_session() -> None:
    r = Replica()
    r.apply(KvCommand(Op.GET, b"k", client_id=4, seq=1))
    assert r.sm.session_count(r.view) == 0


def test_a_session_idle_for_exactly_the_ttl_is_still_alive() -> None:
    r = Replica(session_ttl_ms=1000)
    r.incr(client=1, seq=1, now=5000)
    assert r.incr(client=1, seq=1, now=6000) == KvResult(Status.OK, int_value=1)
    assert r.value() == b"1"


def test_a_retry_after_the_session_expired_applies_again() -> None:
    # The documented limit of every session scheme (Raft thesis §6.3).
    r = Replica(session_ttl_ms=1000)
    r.incr(client=1, seq=1, now=5000)
    assert r.incr(client=1, seq=1, now=6001) == KvResult(Status.OK, int_value=2)
    assert r.sm.session_count(r.view) == 1  # a fresh session


def test_expiry_is_exact_even_before_the_sweep_reaches_a_session() -> None:
    r = Replica(session_ttl_ms=1000, session_sweep_limit=1)
    for client in range(1, 6):
        r.incr(client=client, seq=1, now=0)
    r.apply(Noop(5000))  # sweeps one expired session only
    assert r.sm.session_count(r.view) == 4
    assert r.incr(client=5, seq=1, now=5000) == KvResult(Status.OK, int_value=6)


def test_the_sweep_is_bounded_per_entry_and_oldest_first() -> None:
    r = Replica(session_ttl_ms=1000, session_sweep_limit=2)
    for client in range(1, 11):
        r.incr(client=client, seq=1, now=client)
    r.incr(client=11, seq=1, now=1004)  # clients 1..3 idle > 1000 ms; only 2 are swept
    assert r.client_ids() == [3, 4, 5, 6, 7, 8, 9, 10, 11]
    r.apply(Noop(1004))
    assert r.client_ids() == [4, 5, 6, 7, 8, 9, 10, 11]
    r.apply(Noop(5000))
    r.apply(Noop(5000))
    assert r.client_ids() == [8, 9, 10, 11]
    for _ in range(2):
        r.apply(Noop(5000))
    assert r.client_ids() == []
    assert r.view.meta.keys() == {b"kv/state"}  # no orphaned records


def test_the_least_recently_active_session_is_evicted() -> None:
    r = Replica(max_sessions=3)
    r.incr(client=1, seq=1, now=1)
    r.incr(client=2, seq=1, now=2)
    r.incr(client=3, seq=1, now=3)
    r.incr(client=1, seq=2, now=4)  # client 1 is active again: 2 is now the oldest
    r.incr(client=4, seq=1, now=5)
    assert r.client_ids() == [3, 1, 4]
    assert r.incr(client=1, seq=2, now=6) == KvResult(Status.OK, int_value=4)  # remembered
    assert r.incr(client=2, seq=1, now=7) == KvResult(Status.OK, int_value=6)  # applied again
    assert r.client_ids() == [4, 1, 2]  # the retry moved 1 behind 4; 3 was evicted


def test_a_retry_counts_as_activity() -> None:
    r = Replica(max_sessions=2)
    r.incr(client=1, seq=1, now=1)
    r.incr(client=2, seq=1, now=2)
    r.incr(client=1, seq=1, now=3)  # retry: answered from the session, which moves to the tail
    r.incr(client=3, seq=1, now=4)
    assert r.client_ids() == [1, 3]


def test_activity_list_survives_moves_from_head_middle_and_tail() -> None:
    r = Replica()
    for client in (1, 2, 3, 4):
        r.incr(client=client, seq=1, now=client)
    for step, client in enumerate([2, 1, 4, 4, 3, 2], start=10):
        r.incr(client=client, seq=step, now=step)
    assert r.client_ids() == [1, 4, 3, 2]
    assert [s.last_active for s in r.sm.sessions(r.view)] == [11, 13, 14, 15]


def test_sessions_survive_a_restart_and_a_snapshot() -> None:
    r = Replica()
    r.incr(client=1, seq=1, now=10)
    # Restart: a new state machine object over the same storage.
    restarted = KvStateMachine(lambda k: 0)
    cmd = encode_command(KvCommand(Op.INCRBY, b"n", delta=1, client_id=1, seq=1, now_ms=20))
    assert restarted.apply(r.view, 2, cmd) == KvResult(Status.OK, int_value=1)
    # Snapshot: another replica installs a copy of the view.
    installed = r.view.copy()
    assert KvStateMachine(lambda k: 0).apply(installed, 3, cmd) == KvResult(Status.OK, int_value=1)
    assert installed.get(0, b"n") == b"\x001"


@pytest.mark.parametrize("settings", [{"session_ttl_ms": 0}, {"session_sweep_limit": 0}])
def test_settings_must_be_positive(settings: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        KvStateMachine(lambda k: 0, **settings)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        (b"kv/state", b"short"),
        (b"kv/lru/\x00\x00\x00\x00\x00\x00\x00\x01", b"short"),
        (b"kv/session/\x00\x00\x00\x00\x00\x00\x00\x01", b"\xc1"),
        (b"kv/session/\x00\x00\x00\x00\x00\x00\x00\x01", b"\x94\x63\xc4\x00\x00\xa0"),  # status 99
    ],
)
def test_a_corrupt_meta_record_raises_a_typed_error(name: bytes, raw: bytes) -> None:
    r = Replica()
    r.incr(client=1, seq=1)
    r.view.meta[name] = raw
    with pytest.raises(CorruptKvState):
        r.sm.apply(r.view, 99, encode_command(KvCommand(Op.INCRBY, b"n", client_id=1, seq=1)))


def test_a_corrupt_value_raises_a_typed_error() -> None:
    r = Replica()
    r.view.put(0, b"n", b"\x07junk")
    with pytest.raises(CorruptKvState):
        r.sm.read(r.view, KvCommand(Op.GET, b"n"), 0)
