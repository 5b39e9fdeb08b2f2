"""Each command's semantics (Redis's, plus CAS), table-driven, and TTLs decided by the log.

A case is: some writes applied at ``now_ms`` = 1000, then one command at ``NOW`` (written
through the log, or read with ``read``), its expected result, and the stored values after.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from kvcluster.errors import InvalidArgument
from kvcluster.kv import (
    ExpireSweep,
    KvCommand,
    KvResult,
    KvStateMachine,
    MemoryKvView,
    Noop,
    Op,
    SetFlag,
    Status,
    encode_command,
)

try:
    from kvcluster.sharding import key_slot
except ImportError:  # pragma: no cover - sharding is built alongside

    def key_slot(key: bytes | str) -> int:
        return 0


T0 = 1000  # when the setup writes happen
NOW = 1500  # when the command under test happens

OK = KvResult(Status.OK)
NOT_FOUND = KvResult(Status.NOT_FOUND)
NOT_APPLIED = KvResult(Status.NOT_APPLIED)
NX, XX, KEEPTTL = SetFlag.NX, SetFlag.XX, SetFlag.KEEPTTL
I64_MAX = 2**63 - 1
I64_MIN = -(2**63)


def Int(n: int) -> KvResult:
    return KvResult(Status.OK, int_value=n)


def Invalid(error: str) -> KvResult:
    return KvResult(Status.INVALID, error=error)


def S(key: bytes, value: bytes, ttl: int = 0) -> KvCommand:
    """Setup write at T0; ``ttl`` relative to T0."""
    return KvCommand(Op.SET, key, value, ttl_ms=ttl)


class Replica:
    """One replica: a state machine over a MemoryKvView, fed encoded entries."""

    def __init__(self) -> None:
        self.sm = KvStateMachine(key_slot)
        self.view = MemoryKvView()
        self.index = 0

    def apply(self, cmd: KvCommand | ExpireSweep | Noop) -> KvResult:
        self.index += 1
        return self.sm.apply(self.view, self.index, encode_command(cmd))

    def at(self, now: int, cmd: KvCommand) -> KvResult:
        return self.apply(cmd._replace(now_ms=now))

    def get(self, key: bytes, now: int) -> bytes | None:
        r = self.sm.read(self.view, KvCommand(Op.GET, key), now)
        return r.value if r.status == Status.OK else None

    def ttl(self, key: bytes, now: int) -> int:
        return self.sm.read(self.view, KvCommand(Op.TTL, key), now).int_value


@dataclass
class Case:
    id: str
    setup: list[KvCommand]
    cmd: KvCommand
    want: KvResult
    after: dict[bytes, bytes | None] = field(default_factory=dict)  # GET at NOW
    ttl_after: dict[bytes, int] = field(default_factory=dict)  # TTL at NOW


def C(
    id: str,
    setup: list[KvCommand],
    cmd: KvCommand,
    want: KvResult,
    after: dict[bytes, bytes | None] | None = None,
    ttl: dict[bytes, int] | None = None,
) -> Case:
    return Case(id, setup, cmd, want, after or {}, ttl or {})


K, V = b"k", b"v"
EXP = S(K, b"old", ttl=100)  # expired by NOW (expires at 1100)
LIVE = S(K, b"old", ttl=2000)  # expires at 3000: 1500 ms left at NOW
OLD = S(K, b"old")  # no expiry


def SET(value: bytes = V, flags: int = 0, ttl: int = 0) -> KvCommand:
    return KvCommand(Op.SET, K, value, flags=flags, ttl_ms=ttl)


def CAS(expected: bytes | None, flags: int = 0, ttl: int = 0) -> KvCommand:
    return KvCommand(Op.CAS, K, V, expected=expected, flags=flags, ttl_ms=ttl)


def INCR(delta: int) -> KvCommand:
    return KvCommand(Op.INCRBY, K, delta=delta)


def EXPIRE(ttl: int) -> KvCommand:
    return KvCommand(Op.EXPIRE, K, ttl_ms=ttl)


GET, DEL, EXISTS = KvCommand(Op.GET, K), KvCommand(Op.DELETE, K), KvCommand(Op.EXISTS, K)
TTL, PERSIST = KvCommand(Op.TTL, K), KvCommand(Op.PERSIST, K)
WRONG = KvResult(Status.WRONGTYPE, error="value is not an integer or out of range")
OVERFLOW = Invalid("increment or decrement would overflow")


def NA(value: bytes = b"", present: int = 0) -> KvResult:
    return KvResult(Status.NOT_APPLIED, value, present)


MAX_S, MIN_S = b"9223372036854775807", b"-9223372036854775808"
NOT_INTS = [
    b"abc",
    b"",
    b"1.5",
    b"007",
    b"+1",
    b"-0",
    b" 1",
    b"1 ",
    b"1_000",
    b"\xd9\xa1",
    b"9223372036854775808",
    b"-9223372036854775809",
    b"0x10",
    b"--1",
]

CASES = [
    # SET
    C("set new", [], SET(), OK, {K: V}, {K: -1}),
    C("set overwrites", [OLD], SET(), OK, {K: V}),
    C("set empty value", [], SET(b""), OK, {K: b""}),
    C("set empty key", [], KvCommand(Op.SET, b"", V), OK, {b"": V}),
    C("set NX absent", [], SET(flags=NX), OK, {K: V}),
    C("set NX present", [OLD], SET(flags=NX), NOT_APPLIED, {K: b"old"}),
    C("set NX expired", [EXP], SET(flags=NX), OK, {K: V}, {K: -1}),
    C("set XX absent", [], SET(flags=XX), NOT_APPLIED, {K: None}),
    C("set XX present", [OLD], SET(flags=XX), OK, {K: V}),
    C("set XX expired", [EXP], SET(flags=XX), NOT_APPLIED, {K: None}),
    C("set PX", [], SET(ttl=250), OK, {K: V}, {K: 250}),
    C("set clears ttl", [LIVE], SET(), OK, {K: V}, {K: -1}),
    C("set KEEPTTL", [LIVE], SET(flags=KEEPTTL), OK, {K: V}, {K: 1500}),
    C("set KEEPTTL absent", [], SET(flags=KEEPTTL), OK, {K: V}, {K: -1}),
    C("set KEEPTTL expired", [EXP], SET(flags=KEEPTTL), OK, {K: V}, {K: -1}),
    C("set XX KEEPTTL", [LIVE], SET(flags=XX | KEEPTTL), OK, {K: V}, {K: 1500}),
    C("set PX replaces ttl", [LIVE], SET(ttl=10), OK, {K: V}, {K: 10}),
    C("set NX XX", [], SET(flags=NX | XX), Invalid("NX and XX are mutually exclusive"), {K: None}),
    C("set KEEPTTL PX", [], SET(flags=KEEPTTL, ttl=5), Invalid("KEEPTTL and ttl_ms are mutually")),
    C("set negative ttl", [OLD], SET(ttl=-5), Invalid("ttl_ms must be in 0.."), {K: b"old"}),
    C("set unknown flag", [OLD], SET(flags=8), Invalid("unknown SET flags 0x8"), {K: b"old"}),
    # GET (through the log; reads through read() are checked by every case's `after`)
    C("get absent", [], GET, NOT_FOUND),
    C("get present", [S(K, V)], GET, KvResult(Status.OK, V)),
    C("get empty value", [S(K, b"")], GET, KvResult(Status.OK, b"")),
    C("get expired", [EXP], GET, NOT_FOUND),
    C("get live ttl", [LIVE], GET, KvResult(Status.OK, b"old")),
    # DELETE
    C("delete present", [OLD], DEL, Int(1), {K: None}),
    C("delete absent", [], DEL, Int(0)),
    C("delete expired", [EXP], DEL, Int(0), {K: None}),
    C("delete other key", [S(b"a", V)], DEL, Int(0), {b"a": V}),
    # EXISTS
    C("exists present", [OLD], EXISTS, Int(1)),
    C("exists absent", [], EXISTS, Int(0)),
    C("exists expired", [EXP], EXISTS, Int(0)),
    # INCRBY
    C("incrby absent", [], INCR(5), Int(5), {K: b"5"}, {K: -1}),
    C("incrby existing", [S(K, b"10")], INCR(5), Int(15), {K: b"15"}),
    C("incrby negative", [S(K, b"-10")], INCR(-5), Int(-15), {K: b"-15"}),
    C("incrby zero", [S(K, b"0")], INCR(0), Int(0), {K: b"0"}),
    C("incrby to zero", [S(K, b"3")], INCR(-3), Int(0), {K: b"0"}),
    C("incrby keeps ttl", [S(K, b"1", ttl=2000)], INCR(1), Int(2), {K: b"2"}, {K: 1500}),
    C("incrby expired", [S(K, b"7", ttl=100)], INCR(1), Int(1), {K: b"1"}, {K: -1}),
    C("incrby to max", [S(K, b"9223372036854775806")], INCR(1), Int(I64_MAX), {K: MAX_S}),
    C("incrby overflow", [S(K, MAX_S)], INCR(1), OVERFLOW, {K: MAX_S}),
    C("incrby underflow", [S(K, MIN_S)], INCR(-1), OVERFLOW, {K: MIN_S}),
    C("incrby absent by min", [], INCR(I64_MIN), Int(I64_MIN), {K: MIN_S}),
    *[C(f"incrby on {bad!r}", [S(K, bad)], INCR(1), WRONG, {K: bad}) for bad in NOT_INTS],
    # EXPIRE
    C("expire present", [OLD], EXPIRE(300), Int(1), {K: b"old"}, {K: 300}),
    C("expire replaces", [LIVE], EXPIRE(300), Int(1), {K: b"old"}, {K: 300}),
    C("expire absent", [], EXPIRE(300), Int(0), {K: None}, {K: -2}),
    C("expire expired", [EXP], EXPIRE(300), Int(0), {K: None}),
    C("expire zero", [OLD], EXPIRE(0), Invalid("EXPIRE needs ttl_ms in 1.."), {K: b"old"}, {K: -1}),
    C("expire negative", [OLD], EXPIRE(-3), Invalid("got -3"), {K: b"old"}, {K: -1}),
    # TTL
    C("ttl absent", [], TTL, Int(-2)),
    C("ttl no expiry", [OLD], TTL, Int(-1)),
    C("ttl left", [LIVE], TTL, Int(1500)),
    C("ttl expired", [EXP], TTL, Int(-2)),
    C("ttl last ms", [S(K, V, ttl=501)], TTL, Int(1)),
    C("ttl at expiry", [S(K, V, ttl=500)], TTL, Int(-2)),  # expire_at == now: gone
    # PERSIST
    C("persist ttl", [LIVE], PERSIST, Int(1), {K: b"old"}, {K: -1}),
    C("persist no ttl", [OLD], PERSIST, Int(0), {K: b"old"}, {K: -1}),
    C("persist absent", [], PERSIST, Int(0), {K: None}),
    C("persist expired", [EXP], PERSIST, Int(0), {K: None}),
    # CAS (expected None: "expect the key to be absent")
    C("cas absent expecting absent", [], CAS(None), OK, {K: V}, {K: -1}),
    C("cas present expecting absent", [OLD], CAS(None), NA(b"old", 1), {K: b"old"}),
    C("cas match", [OLD], CAS(b"old"), OK, {K: V}),
    C("cas mismatch", [OLD], CAS(b"other"), NA(b"old", 1), {K: b"old"}),
    C("cas absent expecting value", [], CAS(b"old"), NA(), {K: None}),
    C("cas absent expecting empty", [], CAS(b""), NA(), {K: None}),
    C("cas empty expecting empty", [S(K, b"")], CAS(b""), OK, {K: V}),
    C("cas present expecting empty", [OLD], CAS(b""), NA(b"old", 1), {K: b"old"}),
    C("cas expired expecting absent", [EXP], CAS(None), OK, {K: V}, {K: -1}),
    C("cas expired expecting old", [EXP], CAS(b"old"), NA(), {K: None}),
    C("cas clears ttl", [LIVE], CAS(b"old"), OK, {K: V}, {K: -1}),
    C("cas KEEPTTL", [LIVE], CAS(b"old", flags=KEEPTTL), OK, {K: V}, {K: 1500}),
    C("cas PX", [], CAS(None, ttl=42), OK, {K: V}, {K: 42}),
    C("cas NX", [], CAS(None, flags=NX), Invalid("flags 0x1 not allowed with CAS"), {K: None}),
    # keys in one slot (hash tags) stay distinct
    C("hash tags", [S(b"{u}a", b"1"), S(b"{u}b", b"2")], KvCommand(Op.DELETE, b"{u}a"), Int(1),
      {b"{u}a": None, b"{u}b": b"2"}),
]  # fmt: skip


def same(got: KvResult, want: KvResult) -> bool:
    """Equal, except that an expected INVALID's error need only be part of the actual one."""
    if want.status == Status.INVALID:
        return got.status == Status.INVALID and want.error in got.error
    return got == want


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_command_semantics(case: Case) -> None:
    r = Replica()
    for cmd in case.setup:
        assert r.at(T0, cmd) == OK
    got = r.at(NOW, case.cmd)
    assert same(got, case.want), got
    for key, value in case.after.items():
        assert r.get(key, NOW) == value, key
    for key, ttl in case.ttl_after.items():
        assert r.ttl(key, NOW) == ttl, key


READ_OPS_IN_CASES = [c for c in CASES if c.cmd.op in (Op.GET, Op.EXISTS, Op.TTL)]


@pytest.mark.parametrize("case", READ_OPS_IN_CASES, ids=[c.id for c in READ_OPS_IN_CASES])
def test_read_answers_like_a_logged_read_and_writes_nothing(case: Case) -> None:
    r = Replica()
    for cmd in case.setup:
        r.at(T0, cmd)
    before = r.view.dump()
    assert r.sm.read(r.view, case.cmd, NOW) == case.want
    assert r.view.dump() == before


def test_read_refuses_writes() -> None:
    r = Replica()
    with pytest.raises(InvalidArgument, match="not a read"):
        r.sm.read(r.view, KvCommand(Op.SET, K, V), 0)


def test_read_with_an_oversized_key_is_invalid() -> None:
    r = Replica()
    result = r.sm.read(r.view, KvCommand(Op.GET, b"k" * 501), 0)
    assert result.status == Status.INVALID


# -- time comes only from the log -----------------------------------------------------------
def test_expiry_is_decided_by_the_entries_now_ms() -> None:
    r = Replica()
    r.at(1000, KvCommand(Op.SET, K, V, ttl_ms=100))  # expires at 1100
    assert r.at(1099, KvCommand(Op.EXISTS, K)) == Int(1)
    assert r.at(1100, KvCommand(Op.EXISTS, K)) == Int(0)
    assert r.sm.clock(r.view) == 1100


def test_the_clock_never_goes_back() -> None:
    # A new leader whose wall clock lags stamps smaller now_ms: the clock stays put, and a key
    # that expired does not come back to life.
    r = Replica()
    r.at(1000, KvCommand(Op.SET, K, V, ttl_ms=100))
    r.apply(Noop(2000))
    assert r.at(1050, KvCommand(Op.SET, K, b"x", flags=XX)) == NOT_APPLIED
    assert r.at(1050, KvCommand(Op.SET, b"t", V, ttl_ms=100)) == OK  # PX from the clock, 2000
    assert r.ttl(b"t", 0) == 100
    assert r.sm.clock(r.view) == 2000


def test_reads_never_go_below_the_clock() -> None:
    r = Replica()
    r.at(1000, KvCommand(Op.SET, K, V, ttl_ms=100))
    r.apply(Noop(5000))
    assert r.get(K, 0) is None  # a stale follower read passes 0: the clock decides
    assert r.get(K, 1050) is None
    r.at(5000, KvCommand(Op.SET, K, V, ttl_ms=100))
    assert r.get(K, 5099) == V  # the caller's clock ahead of the state machine's counts
    assert r.get(K, 5100) is None
    assert r.ttl(K, 5040) == 60


def test_noop_zero_leaves_the_clock() -> None:
    r = Replica()
    r.apply(Noop(700))
    assert r.sm.apply(r.view, 9, b"") == OK
    assert r.sm.clock(r.view) == 700


def test_expire_sweep_deletes_only_keys_still_expired() -> None:
    r = Replica()
    r.at(1000, KvCommand(Op.SET, b"a", V, ttl_ms=100))
    r.at(1000, KvCommand(Op.SET, b"b", V, ttl_ms=100))
    r.at(1000, KvCommand(Op.SET, b"c", V))
    r.at(1000, KvCommand(Op.SET, b"d", V, ttl_ms=10_000))
    # The leader saw a and b expired at 1200; b was set again before the sweep applied.
    r.at(1150, KvCommand(Op.SET, b"b", b"new"))
    sweep = ExpireSweep(1200, (b"a", b"b", b"c", b"d", b"missing", b"a", b"k" * 600))
    assert r.apply(sweep) == Int(1)
    assert r.view.get(key_slot(b"a"), b"a") is None  # physically gone
    assert r.get(b"b", 1200) == b"new"
    assert r.get(b"c", 1200) == V
    assert r.get(b"d", 1200) == V
    assert r.sm.clock(r.view) == 1200


def test_expire_sweep_now_advances_the_clock_first() -> None:
    r = Replica()
    r.at(1000, KvCommand(Op.SET, b"a", V, ttl_ms=100))
    assert r.apply(ExpireSweep(1100, (b"a",))) == Int(1)


def test_writes_delete_expired_keys_on_the_way() -> None:
    r = Replica()
    r.at(1000, KvCommand(Op.SET, b"a", V, ttl_ms=100))
    r.at(2000, KvCommand(Op.EXPIRE, b"a", ttl_ms=5))
    assert r.view.data == {}


def test_slots_come_from_slot_of() -> None:
    seen: list[bytes] = []

    def slot_of(key: bytes) -> int:
        seen.append(key)
        return 42

    sm = KvStateMachine(slot_of)
    view = MemoryKvView()
    sm.apply(view, 1, encode_command(KvCommand(Op.SET, b"x", V)))
    assert list(view.data) == [(42, b"x")]
    assert seen == [b"x"]


def test_stored_form_is_compact() -> None:
    r = Replica()
    r.at(1000, KvCommand(Op.SET, b"a", V))
    r.at(1000, KvCommand(Op.SET, b"b", V, ttl_ms=5))
    assert r.view.get(key_slot(b"a"), b"a") == b"\x00v"
    assert r.view.get(key_slot(b"b"), b"b") == b"\x01" + (1005).to_bytes(8, "big") + b"v"


def test_state_machine_rejects_bad_settings() -> None:
    with pytest.raises(InvalidArgument):
        KvStateMachine(key_slot, max_sessions=0)
