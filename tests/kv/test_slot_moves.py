"""A shard group's side of a slot migration (``kvcluster.kv.slot_moves``): the move commands
on the wire, their idempotency and staleness, the ordering of import chunks, the guard that
every client write and read passes, TTLs and sessions carried across, and the whole move
end to end between two groups under random client traffic (hypothesis).

Groups are ``KvStateMachine`` + ``MemoryKvView`` pairs built with the real ``key_slot``; every
entry goes through ``encode_command``/``decode_command`` as it would through a Raft log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcluster.kv import (
    MAX_NOW_MS,
    Command,
    ExpireSweep,
    KvCommand,
    KvResult,
    KvStateMachine,
    MalformedCommand,
    MemoryKvView,
    Noop,
    Op,
    Status,
    decode_command,
    decode_value,
    encode_command,
    encode_value,
    is_expired,
)
from kvcluster.kv import sessions as kv_sessions
from kvcluster.kv._msgpack import pack
from kvcluster.kv.sessions import check_sessions
from kvcluster.kv.slot_moves import (
    DIRTY_BASE,
    MAX_CHUNK_KEYS,
    MOVE_TAGS,
    Activate,
    DropImport,
    Freeze,
    ImportBegin,
    ImportChunk,
    MigrateOut,
    MoveCommand,
    Release,
    SlotRecord,
    SlotState,
    Unfreeze,
    decode_final_pass,
    decode_move,
    encode_move,
    read_record,
)
from kvcluster.sharding import key_slot

SRC, DST = 1, 2  # group ids
MID = 7  # the migration under test
SLOT = key_slot(b"{mv}")
OTHER = key_slot(b"{ot}")
IN_KEYS = (b"{mv}a", b"{mv}b", b"{mv}c")  # keys of the moving slot
OUT_KEYS = (b"{ot}a", b"{ot}b")  # keys of a slot that stays
assert SLOT != OTHER
assert all(key_slot(k) == SLOT for k in IN_KEYS)
assert all(key_slot(k) == OTHER for k in OUT_KEYS)

OK = KvResult(Status.OK)


class Group:
    """One shard group's state machine and view; entries go through the wire form."""

    def __init__(self, gid: int) -> None:
        self.gid = gid
        self.sm = KvStateMachine(key_slot)
        self.view = MemoryKvView()
        self.index = 0

    def apply(self, cmd: Command) -> KvResult:
        self.index += 1
        data = encode_command(cmd)
        assert decode_command(data) == cmd
        result = self.sm.apply(self.view, self.index, data)
        check_sessions(self.view, self.view.meta)
        return result

    def raw(self, cmd: bytes) -> KvResult:
        self.index += 1
        return self.sm.apply(self.view, self.index, cmd)

    def put(
        self, key: bytes, value: bytes, now: int, ttl: int = 0, client_id: int = 0, seq: int = 0
    ) -> KvResult:
        """SET ``key`` to ``value`` through the log."""
        cmd = KvCommand(Op.SET, key, value, ttl_ms=ttl, client_id=client_id, seq=seq, now_ms=now)
        return self.apply(cmd)

    def get(self, key: bytes, now: int = 0) -> KvResult:
        return self.sm.read(self.view, KvCommand(Op.GET, key), now)

    def value(self, key: bytes) -> bytes | None:
        r = self.get(key)
        return r.value if r.status == Status.OK else None

    def record(self, slot: int = SLOT) -> SlotRecord | None:
        return read_record(self.view, slot)

    def dirty(self, slot: int = SLOT) -> set[bytes]:
        return {k for k, _ in self.view.scan(DIRTY_BASE + slot, None, 10_000)}

    def slot_data(self, slot: int = SLOT) -> dict[bytes, bytes]:
        return dict(self.view.scan(slot, None, 10_000))

    def clock(self) -> int:
        return self.sm.clock(self.view)


# -- states a test starts from ----------------------------------------------------------------
def source(state: SlotState | None = None, mid: int = MID) -> Group:
    """A source group holding keys in SLOT and OTHER, its slot taken to ``state``."""
    g = Group(SRC)
    for i, k in enumerate(IN_KEYS + OUT_KEYS):
        g.put(k, b"v%d" % i, now=10)
    if state is None:
        return g
    assert g.apply(MigrateOut(20, SLOT, mid, DST)) == OK
    g.put(IN_KEYS[0], b"changed", now=21)  # a dirty key
    if state == SlotState.MIGRATING:
        return g
    assert g.apply(Freeze(30, SLOT, mid)).ok
    if state == SlotState.FROZEN:
        return g
    assert g.apply(Release(40, SLOT, mid)).ok
    assert state == SlotState.RELEASED
    return g


def target(state: SlotState | None = None, mid: int = MID) -> Group:
    """A target group holding a key of OTHER, SLOT taken to ``state`` (IMPORTING: one chunk
    applied)."""
    g = Group(DST)
    g.put(OUT_KEYS[0], b"theirs", now=10)
    if state is None:
        return g
    assert g.apply(ImportBegin(20, SLOT, mid, SRC, 1)) == OK
    assert g.apply(chunk(1, ((IN_KEYS[0], encode_value(b"c1", 0)),), now=21, mid=mid)).ok
    if state == SlotState.IMPORTING:
        return g
    assert g.apply(Activate(30, SLOT, mid, 1)) == OK
    assert state == SlotState.ACTIVE
    return g


def chunk(
    n: int,
    puts: tuple[tuple[bytes, bytes | None], ...] = (),
    *,
    attempt: int = 1,
    now: int = 50,
    mid: int = MID,
    sessions: tuple[tuple[int, int, bytes], ...] = (),
) -> ImportChunk:
    return ImportChunk(now, SLOT, mid, attempt, n, puts, sessions)


def plain(value: bytes) -> bytes:
    return encode_value(value, 0)


# == the wire form ===========================================================================
EXAMPLES: list[MoveCommand] = [
    MigrateOut(5, 0, 1, 2),
    Freeze(5, 16383, 1),
    Release(0, 12, 3),
    Unfreeze(9, 12, 3),
    ImportBegin(5, 12, 3, 1, 2),
    ImportChunk(5, 12, 3, 2, 1, (), ()),
    ImportChunk(
        2**40,
        12,
        3,
        2,
        4,
        ((b"k", plain(b"v")), (b"gone", None), (b"t", encode_value(b"x", 99))),
        ((1, 4, pack((0, b"", 1, "", 12))), (2**63, 1, pack((2, b"cur", 1, "")))),
    ),
    Activate(5, 12, 3, 2),
    DropImport(5, 12, 3),
]


@pytest.mark.parametrize("cmd", EXAMPLES, ids=lambda c: type(c).__name__)
def test_move_commands_round_trip(cmd: MoveCommand) -> None:
    data = encode_command(cmd)
    assert data == encode_move(cmd)
    assert decode_command(data) == cmd
    assert type(decode_command(data)) is type(cmd)


def test_an_import_chunk_without_sessions_field_decodes_with_none() -> None:
    data = pack((115, 5, 12, 3, 2, 1, ((b"k", plain(b"v")),)))
    assert decode_command(data) == ImportChunk(5, 12, 3, 2, 1, ((b"k", plain(b"v")),), ())


_u = st.integers(0, 2**64 - 1)
_now = st.integers(0, MAX_NOW_MS)
_slots = st.integers(0, 16383)
_stored = st.one_of(
    st.none(),
    st.builds(encode_value, st.binary(max_size=8), st.sampled_from([0, 1, 2**40])),
)
_records = st.builds(
    lambda status, value, n, err: pack((status, value, n, err, 3)),
    st.sampled_from([int(s) for s in Status]),
    st.binary(max_size=4),
    st.integers(-(2**63), 2**63 - 1),
    st.text(max_size=4),
)
_moves = st.one_of(
    st.builds(MigrateOut, _now, _slots, _u, _u),
    st.builds(Freeze, _now, _slots, _u),
    st.builds(Release, _now, _slots, _u),
    st.builds(Unfreeze, _now, _slots, _u),
    st.builds(ImportBegin, _now, _slots, _u, _u, _u),
    st.builds(
        ImportChunk,
        _now,
        _slots,
        _u,
        _u,
        _u,
        st.lists(st.tuples(st.binary(max_size=8), _stored), max_size=4).map(tuple),
        st.lists(
            st.tuples(st.integers(1, 2**64 - 1), st.integers(1, 2**64 - 1), _records), max_size=3
        ).map(tuple),
    ),
    st.builds(Activate, _now, _slots, _u, _u),
    st.builds(DropImport, _now, _slots, _u),
)


@settings(max_examples=100, deadline=None)
@given(_moves)
def test_any_move_command_round_trips(cmd: MoveCommand) -> None:
    assert decode_command(encode_command(cmd)) == cmd


GOOD_RECORD = pack((0, b"", 1, "", SLOT))
MALFORMED: list[tuple[str, tuple[Any, ...]]] = [
    ("too few fields", (110, 5, 12, 3)),
    ("too many fields", (111, 5, 12, 3, 4)),
    ("only a tag and now", (116, 5)),
    ("negative id", (111, 5, 12, -1)),
    ("bool for an int", (111, 5, 12, True)),
    ("str for an int", (114, 5, 12, 3, "1", 1)),
    ("bytes for an int", (112, 5, b"\x00", 3)),
    ("nil for an int", (116, 5, 12, None)),
    ("slot out of range", (116, 5, 16384, 3)),
    ("shadow slot", (110, 5, DIRTY_BASE + 12, 3, 2)),
    ("now beyond MAX_NOW_MS", (116, 2**62 + 1, 12, 3)),
    ("puts not an array", (115, 5, 12, 3, 1, 1, b"k", ())),
    ("put not a pair", (115, 5, 12, 3, 1, 1, ((b"k",),), ())),
    ("put key not bytes", (115, 5, 12, 3, 1, 1, (("k", plain(b"v")),), ())),
    ("put value not bytes", (115, 5, 12, 3, 1, 1, ((b"k", 1),), ())),
    ("put value not a stored value", (115, 5, 12, 3, 1, 1, ((b"k", b"\x07v"),), ())),
    ("put value empty", (115, 5, 12, 3, 1, 1, ((b"k", b""),), ())),
    ("too many puts", (115, 5, 12, 3, 1, 1, ((b"k", None),) * (MAX_CHUNK_KEYS + 1), ())),
    ("sessions not an array", (115, 5, 12, 3, 1, 1, (), 7)),
    ("session client 0", (115, 5, 12, 3, 1, 1, (), ((0, 1, GOOD_RECORD),))),
    ("session seq 0", (115, 5, 12, 3, 1, 1, (), ((1, 0, GOOD_RECORD),))),
    ("session record not bytes", (115, 5, 12, 3, 1, 1, (), ((1, 1, "r"),))),
    ("session record not msgpack", (115, 5, 12, 3, 1, 1, (), ((1, 1, b"\xc1"),))),
    ("session record a map", (115, 5, 12, 3, 1, 1, (), ((1, 1, b"\x80"),))),
    ("session record short", (115, 5, 12, 3, 1, 1, (), ((1, 1, pack((0, b"", 1))),))),
    ("session record bad status", (115, 5, 12, 3, 1, 1, (), ((1, 1, pack((99, b"", 0, ""))),))),
    ("session record value str", (115, 5, 12, 3, 1, 1, (), ((1, 1, pack((0, "v", 0, ""))),))),
    ("session record an int", (115, 5, 12, 3, 1, 1, (), ((1, 1, pack(5)),))),
]


@pytest.mark.parametrize(("why", "items"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_move_entries_are_refused_and_change_nothing(
    why: str, items: tuple[Any, ...]
) -> None:
    data = pack(items)
    with pytest.raises(MalformedCommand):
        decode_command(data)
    g = target(SlotState.IMPORTING, mid=3)
    g.apply(Noop(1000))
    before = g.view.dump()
    result = g.raw(data)
    assert result.status == Status.INVALID
    assert "malformed" in result.error
    assert g.view.dump() == before  # not even the clock moved


def test_decode_move_raises_value_error_not_anything_else() -> None:
    with pytest.raises(ValueError):
        decode_move((111, 5, "x", 3))


_junk = st.one_of(
    st.integers(-2, 3),
    st.binary(max_size=3),
    st.none(),
    st.booleans(),
    st.text(max_size=2),
)
_fuzz_puts = st.lists(
    st.one_of(
        st.tuples(st.binary(max_size=3), st.one_of(st.none(), st.binary(max_size=10))), _junk
    ),
    max_size=3,
).map(tuple)
_fuzz_sessions = st.lists(
    st.one_of(
        st.tuples(st.integers(0, 3), st.integers(0, 3), st.one_of(st.binary(max_size=8), _records)),
        _junk,
    ),
    max_size=2,
).map(tuple)


@settings(max_examples=300, deadline=None)
@given(
    tag=st.sampled_from(sorted(MOVE_TAGS)),
    now=st.integers(0, 100),
    fields=st.lists(st.one_of(_junk, _fuzz_puts, _fuzz_sessions), max_size=7),
)
def test_any_entry_with_a_move_tag_decodes_or_is_malformed_and_never_crashes_apply(
    tag: int, now: int, fields: list[Any]
) -> None:
    """Nothing a log entry holds can make applying it raise (a replica that cannot apply an
    entry stops for good): it is a move command, or MalformedCommand and INVALID."""
    data = pack((tag, now, *fields))
    try:
        cmd = decode_command(data)
    except MalformedCommand:
        cmd = None
    g = Group(DST)
    for slot in (0, 1, 2):
        g.apply(ImportBegin(0, slot, 1, SRC, 1))
    result = g.raw(data)
    assert isinstance(result, KvResult)
    if cmd is None:
        assert result.status == Status.INVALID
    check_sessions(g.view, g.view.meta)


# == idempotency and staleness ===============================================================
@dataclass(frozen=True)
class Case:
    name: str
    start: Callable[[], Group]
    cmd: MoveCommand


CASES = [
    Case("MigrateOut", source, MigrateOut(50, SLOT, MID, DST)),
    Case("Freeze", lambda: source(SlotState.MIGRATING), Freeze(50, SLOT, MID)),
    Case("Release", lambda: source(SlotState.FROZEN), Release(50, SLOT, MID)),
    Case("Unfreeze MIGRATING", lambda: source(SlotState.MIGRATING), Unfreeze(50, SLOT, MID)),
    Case("ImportBegin", target, ImportBegin(50, SLOT, MID, SRC, 1)),
    Case(
        "ImportBegin next attempt",
        lambda: target(SlotState.IMPORTING),
        ImportBegin(50, SLOT, MID, SRC, 2),
    ),
    Case(
        "ImportChunk",
        lambda: target(SlotState.IMPORTING),
        chunk(
            2,
            ((IN_KEYS[0], None), (IN_KEYS[1], plain(b"x"))),
            sessions=((5, 3, GOOD_RECORD),),
        ),
    ),
    Case("Activate", lambda: target(SlotState.IMPORTING), Activate(50, SLOT, MID, 1)),
    Case("DropImport", lambda: target(SlotState.IMPORTING), DropImport(50, SLOT, MID)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_each_command_applied_twice_is_applied_once(case: Case) -> None:
    once, twice = case.start(), case.start()
    first = once.apply(case.cmd)
    assert first.ok, first
    assert twice.apply(case.cmd).ok
    again = twice.apply(case.cmd)
    assert again.status == Status.OK
    assert twice.view.dump() == once.view.dump()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_replaying_the_whole_history_changes_nothing(case: Case) -> None:
    """A replayed command after later changes (a retried step) is a no-op too."""
    g = case.start()
    assert g.apply(case.cmd).ok
    g.put(OUT_KEYS[1], b"later", now=60)
    before = g.view.dump()
    assert g.apply(case.cmd._replace(now_ms=60)).ok
    assert g.view.dump() == before


ALL_OF_MIGRATION_4: list[MoveCommand] = [
    MigrateOut(40, SLOT, 4, DST),
    Freeze(40, SLOT, 4),
    Release(40, SLOT, 4),
    Unfreeze(40, SLOT, 4),
    ImportBegin(40, SLOT, 4, SRC, 9),
    chunk(1, ((IN_KEYS[0], plain(b"old")),), mid=4, now=40),
    Activate(40, SLOT, 4, 9),
    DropImport(40, SLOT, 4),
]


@pytest.mark.parametrize(
    "state",
    [SlotState.MIGRATING, SlotState.FROZEN, SlotState.RELEASED, SlotState.IMPORTING, "ACTIVE"],
)
@pytest.mark.parametrize("cmd", ALL_OF_MIGRATION_4, ids=lambda c: type(c).__name__)
def test_a_command_of_an_older_migration_is_stale_and_changes_nothing(
    state: SlotState | str, cmd: MoveCommand
) -> None:
    if state in (SlotState.IMPORTING, "ACTIVE"):
        g = target(SlotState.IMPORTING if state == SlotState.IMPORTING else SlotState.ACTIVE)
    else:
        g = source(state)  # type: ignore[arg-type]
    g.apply(Noop(40))
    before = g.view.dump()
    result = g.apply(cmd)
    assert result.status == Status.INVALID
    assert "stale" in result.error
    assert g.view.dump() == before


# == import chunks ==========================================================================
def test_a_chunk_applies_only_as_the_next_chunk_of_the_attempt() -> None:
    g = target()
    g.apply(ImportBegin(10, SLOT, MID, SRC, 1))
    c1 = chunk(1, ((b"{mv}a", plain(b"1")),))
    c2 = chunk(2, ((b"{mv}a", plain(b"2")),))
    assert g.apply(c1) == KvResult(Status.OK, int_value=1)
    assert g.apply(c2).ok
    before = g.view.dump()
    assert g.apply(c1) == OK  # a duplicate of an applied chunk: no-op
    assert g.apply(c2) == OK
    assert g.view.dump() == before
    gap = g.apply(chunk(4, ((b"{mv}a", plain(b"4")),)))
    assert gap.status == Status.INVALID and "out of order" in gap.error
    assert g.view.dump() == before
    assert g.slot_data() == {b"{mv}a": plain(b"2")}


def test_a_delayed_chunk_of_an_earlier_attempt_never_overwrites_later_data() -> None:
    g = target()
    g.apply(ImportBegin(10, SLOT, MID, SRC, 1))
    old = [chunk(n, ((b"{mv}a", plain(b"old%d" % n)),)) for n in (1, 2, 3)]
    g.apply(old[0])
    # The copy is restarted: a new attempt clears what the first one brought.
    assert g.apply(ImportBegin(20, SLOT, MID, SRC, 2)) == OK
    assert g.slot_data() == {}
    assert g.record() == SlotRecord(SlotState.IMPORTING, MID, SRC, 2, 0)
    g.apply(chunk(1, ((b"{mv}a", plain(b"copy")),), attempt=2))
    g.apply(chunk(2, ((b"{mv}a", plain(b"final")),), attempt=2))  # the final pass
    before = g.view.dump()
    for c in old:  # attempt 1's chunk 3 would be "the next chunk" by number alone
        late = g.apply(c._replace(now_ms=50))
        assert late.status == Status.INVALID and "superseded" in late.error
    assert g.view.dump() == before
    assert g.apply(Activate(60, SLOT, MID, 1)).status == Status.INVALID  # not the current copy
    assert g.apply(Activate(60, SLOT, MID, 2)) == OK
    assert g.apply(old[2]._replace(now_ms=60)) == OK  # still a no-op once active
    assert g.value(b"{mv}a") == b"final"


def test_a_chunk_of_an_attempt_not_yet_begun_is_refused() -> None:
    """Answering OK would tell the executor a chunk it never applied was applied."""
    g = target(SlotState.IMPORTING)  # attempt 1, chunk 1
    before = g.view.dump()
    result = g.apply(chunk(1, ((b"{mv}b", plain(b"x")),), attempt=2, now=21))
    assert result.status == Status.INVALID
    assert "attempt 2" in result.error
    assert g.view.dump() == before


def test_an_older_copy_attempt_is_refused() -> None:
    g = target()
    g.apply(ImportBegin(10, SLOT, MID, SRC, 3))
    before = g.view.dump()
    result = g.apply(ImportBegin(10, SLOT, MID, SRC, 2))
    assert result.status == Status.INVALID and "is older than" in result.error
    assert g.view.dump() == before


@pytest.mark.parametrize(
    "cmd", [chunk(1), Activate(50, SLOT, MID, 1)], ids=lambda c: type(c).__name__
)
def test_chunks_and_activate_need_an_import_under_way(cmd: MoveCommand) -> None:
    g = target()
    g.apply(Noop(50))
    before = g.view.dump()
    result = g.apply(cmd)
    assert result.status == Status.INVALID and "not IMPORTING" in result.error
    assert g.view.dump() == before


# == the guard ==============================================================================
def write(op: Op, key: bytes, now: int, **kw: Any) -> KvCommand:
    return KvCommand(op, key, now_ms=now, **kw)


WRITES: list[tuple[str, Callable[[bytes, int], KvCommand]]] = [
    ("SET", lambda k, t: write(Op.SET, k, t, value=b"n")),
    ("DELETE", lambda k, t: write(Op.DELETE, k, t)),
    ("INCRBY", lambda k, t: write(Op.INCRBY, k, t, delta=2)),
    ("CAS", lambda k, t: write(Op.CAS, k, t, expected=None, value=b"c")),
    ("EXPIRE", lambda k, t: write(Op.EXPIRE, k, t, ttl_ms=500)),
    ("PERSIST", lambda k, t: write(Op.PERSIST, k, t)),
]


@pytest.mark.parametrize(("name", "make"), WRITES, ids=[w[0] for w in WRITES])
def test_a_write_to_a_migrating_slot_is_served_and_marks_its_key_dirty(
    name: str, make: Callable[[bytes, int], KvCommand]
) -> None:
    g = source(SlotState.MIGRATING)
    assert g.dirty() == {IN_KEYS[0]}
    result = g.apply(make(IN_KEYS[1], 30))
    assert result.status not in (Status.TRYAGAIN, Status.MOVED, Status.INVALID)
    absent = g.apply(make(b"{mv}absent", 31))  # even when nothing changes
    assert absent.status not in (Status.TRYAGAIN, Status.MOVED, Status.INVALID)
    g.apply(make(OUT_KEYS[0], 32))  # another slot: not marked
    assert g.dirty() == {IN_KEYS[0], IN_KEYS[1], b"{mv}absent"}
    assert g.dirty(OTHER) == set()
    assert g.get(IN_KEYS[2]).ok  # reads are served


def test_migrate_out_starts_with_no_dirty_marks_and_a_replay_keeps_them() -> None:
    g = source(SlotState.MIGRATING)
    assert g.dirty() == {IN_KEYS[0]}
    g.apply(MigrateOut(25, SLOT, MID, DST))  # a replay must not forget what is dirty
    assert g.dirty() == {IN_KEYS[0]}


def test_an_expire_sweep_in_a_migrating_slot_marks_what_it_deletes() -> None:
    g = source()
    g.put(b"{mv}t", b"v", now=10, ttl=5)
    g.put(b"{mv}live", b"v", now=10, ttl=500)
    g.apply(MigrateOut(12, SLOT, MID, DST))
    assert g.apply(ExpireSweep(20, (b"{mv}t", b"{mv}live"))) == KvResult(Status.OK, int_value=1)
    assert g.dirty() == {b"{mv}t"}
    assert g.view.get(SLOT, b"{mv}t") is None


def test_an_expire_sweep_leaves_a_frozen_slot_alone() -> None:
    g = source()
    g.put(b"{mv}t", b"v", now=10, ttl=5)
    g.apply(MigrateOut(11, SLOT, MID, DST))
    g.apply(Freeze(12, SLOT, MID))
    assert g.apply(ExpireSweep(20, (b"{mv}t",))) == KvResult(Status.OK, int_value=0)
    assert g.view.get(SLOT, b"{mv}t") is not None  # the frozen data is final
    assert g.get(b"{mv}t").status == Status.TRYAGAIN


@pytest.mark.parametrize(
    ("start", "want"),
    [
        (lambda: source(SlotState.FROZEN), KvResult(Status.TRYAGAIN)),
        (lambda: target(SlotState.IMPORTING), KvResult(Status.TRYAGAIN)),
        (lambda: source(SlotState.RELEASED), KvResult(Status.MOVED, int_value=DST)),
    ],
    ids=["FROZEN", "IMPORTING", "RELEASED"],
)
@pytest.mark.parametrize(("name", "make"), WRITES, ids=[w[0] for w in WRITES])
def test_writes_and_reads_of_a_slot_not_served_here_are_refused_and_not_remembered(
    start: Callable[[], Group],
    want: KvResult,
    name: str,
    make: Callable[[bytes, int], KvCommand],
) -> None:
    g = start()
    data_before = dict(g.view.data)
    cmd = make(IN_KEYS[1], 60)._replace(client_id=9, seq=1)
    result = g.apply(cmd)
    assert (result.status, result.int_value) == (want.status, want.int_value)
    assert g.view.data == data_before
    assert g.sm.session_count(g.view) == 0  # the write did not happen
    for read in (Op.GET, Op.EXISTS, Op.TTL):
        r = g.sm.read(g.view, KvCommand(read, IN_KEYS[1]), 60)
        assert (r.status, r.int_value) == (want.status, want.int_value)
        logged = g.apply(KvCommand(read, IN_KEYS[1], now_ms=60))
        assert (logged.status, logged.int_value) == (want.status, want.int_value)
    assert g.apply(make(OUT_KEYS[0], 61)).status not in (Status.TRYAGAIN, Status.MOVED)
    assert g.get(OUT_KEYS[0]).status in (Status.OK, Status.NOT_FOUND)


def test_a_write_refused_while_frozen_is_applied_once_when_retried_at_the_target() -> None:
    a, b = source(SlotState.FROZEN), target(SlotState.IMPORTING)
    incr = KvCommand(Op.INCRBY, b"{mv}n", delta=5, client_id=3, seq=1, now_ms=50)
    assert a.apply(incr).status == Status.TRYAGAIN  # not remembered: it did not happen
    assert b.apply(incr).status == Status.TRYAGAIN  # not active there yet
    assert b.apply(chunk(2, tuple(a.view.scan(SLOT, None, 100)))).ok
    assert b.apply(Activate(51, SLOT, MID, 1)) == OK
    assert b.apply(incr._replace(now_ms=52)) == KvResult(Status.OK, int_value=5)
    assert b.apply(incr._replace(now_ms=53)) == KvResult(Status.OK, int_value=5)  # remembered
    assert b.value(b"{mv}n") == b"5"


def test_a_retried_write_that_was_applied_gets_its_answer_even_when_frozen() -> None:
    g = source()
    incr = KvCommand(Op.INCRBY, b"{mv}n", delta=5, client_id=3, seq=1, now_ms=15)
    assert g.apply(incr) == KvResult(Status.OK, int_value=5)
    g.apply(MigrateOut(20, SLOT, MID, DST))
    g.apply(Freeze(30, SLOT, MID))
    assert g.apply(incr._replace(now_ms=31)) == KvResult(Status.OK, int_value=5)
    g.apply(Release(40, SLOT, MID))
    assert g.apply(incr._replace(now_ms=41)) == KvResult(Status.OK, int_value=5)
    nxt = g.apply(incr._replace(seq=2, now_ms=42))
    assert (nxt.status, nxt.int_value) == (Status.MOVED, DST)


def test_an_active_slot_is_served_like_one_without_a_record() -> None:
    g = target(SlotState.ACTIVE)
    assert g.record() == SlotRecord(SlotState.ACTIVE, MID, SRC)
    assert g.value(IN_KEYS[0]) == b"c1"
    assert g.apply(KvCommand(Op.INCRBY, b"{mv}n", delta=1, now_ms=40)).int_value == 1
    assert g.dirty() == set()


# == TTLs ===================================================================================
def test_a_stored_value_and_its_absolute_expiry_are_carried_over() -> None:
    src, dst = source(), target()
    src.put(b"{mv}t", b"v", now=100, ttl=1000)  # expires at 1100
    raw = src.view.get(SLOT, b"{mv}t")
    assert raw is not None and decode_value(raw) == (b"v", 1100)
    dst.apply(ImportBegin(200, SLOT, MID, SRC, 1))
    dst.apply(chunk(1, ((b"{mv}t", raw),), now=200))
    dst.apply(Activate(300, SLOT, MID, 1))
    assert dst.view.get(SLOT, b"{mv}t") == raw
    ttl = dst.sm.read(dst.view, KvCommand(Op.TTL, b"{mv}t"), 0)
    assert ttl == KvResult(Status.OK, int_value=1100 - 300)


def test_a_key_expired_at_the_source_is_expired_at_the_target() -> None:
    """The chunk's now_ms (the source's clock) advances the target's clock."""
    src, dst = source(), target()
    src.put(b"{mv}t", b"v", now=100, ttl=50)  # expires at 150
    src.apply(Noop(500))
    raw = src.view.get(SLOT, b"{mv}t")
    assert raw is not None and is_expired(raw, src.clock())
    dst.apply(ImportBegin(20, SLOT, MID, SRC, 1))
    dst.apply(chunk(1, ((b"{mv}t", raw),), now=src.clock()))
    dst.apply(Activate(20, SLOT, MID, 1))
    assert dst.clock() == 500
    assert dst.get(b"{mv}t", 0).status == Status.NOT_FOUND  # even a read that brings no clock
    assert dst.apply(KvCommand(Op.INCRBY, b"{mv}t", delta=1, now_ms=30)).int_value == 1


# == release and the undo commands ==========================================================
def test_release_deletes_the_slot_data_and_dirty_marks_and_answers_moved() -> None:
    g = source(SlotState.FROZEN)
    others = g.slot_data(OTHER)
    assert g.dirty()
    assert g.apply(Release(40, SLOT, MID)) == KvResult(Status.OK, int_value=len(IN_KEYS))
    assert g.slot_data() == {}
    assert g.dirty() == set()
    assert g.slot_data(OTHER) == others
    assert g.record() == SlotRecord(SlotState.RELEASED, MID, DST)
    moved = g.get(IN_KEYS[0])
    assert (moved.status, moved.int_value) == (Status.MOVED, DST)


def test_release_needs_a_frozen_slot() -> None:
    g = source(SlotState.MIGRATING)
    result = g.apply(Release(40, SLOT, MID))
    assert result.status == Status.INVALID
    assert g.slot_data()  # nothing deleted


def test_unfreeze_undoes_migrate_out() -> None:
    g = source(SlotState.MIGRATING)
    data = dict(g.view.data)
    data = {sk: v for sk, v in data.items() if sk[0] != DIRTY_BASE + SLOT}
    assert g.apply(Unfreeze(50, SLOT, MID)) == OK
    assert g.record() == SlotRecord(SlotState.ABORTED, MID, DST)  # a tombstone
    assert g.dirty() == set()
    assert g.view.data == data
    assert g.put(IN_KEYS[1], b"again", now=51) == OK
    assert g.dirty() == set()
    assert g.value(IN_KEYS[1]) == b"again"


@pytest.mark.parametrize("state", [SlotState.FROZEN, SlotState.RELEASED])
def test_unfreeze_once_frozen_is_refused_and_without_a_migration_is_a_no_op(
    state: SlotState,
) -> None:
    """Past the freeze the move is decided: the target may be serving the slot already."""
    g = source(state)
    g.apply(Noop(50))
    before = g.view.dump()
    result = g.apply(Unfreeze(50, SLOT, MID))
    assert result.status == Status.INVALID and "decided" in result.error
    assert g.view.dump() == before
    fresh = source()
    fresh.apply(Noop(50))
    before = fresh.view.dump()
    assert fresh.apply(Unfreeze(50, SLOT, MID)) == OK
    assert fresh.view.dump() == before


def test_drop_import_undoes_the_import() -> None:
    g = target(SlotState.IMPORTING)
    others = g.slot_data(OTHER)
    assert g.apply(DropImport(50, SLOT, MID)) == OK
    assert g.record() == SlotRecord(SlotState.ABORTED, MID, SRC)  # a tombstone
    assert g.slot_data() == {}
    assert g.slot_data(OTHER) == others
    assert g.apply(ImportBegin(60, SLOT, MID + 1, SRC, 1)) == OK  # a later migration may come


def test_drop_import_after_activate_is_refused_and_without_an_import_is_a_no_op() -> None:
    """Activate comes only after the source froze, and a frozen move is never aborted: an
    active copy may have acknowledged writes, so it is the slot now."""
    g = target(SlotState.ACTIVE)
    g.apply(Noop(50))
    before = g.view.dump()
    result = g.apply(DropImport(50, SLOT, MID))
    assert result.status == Status.INVALID and "decided" in result.error
    assert g.view.dump() == before
    fresh = target()
    fresh.apply(Noop(50))
    before = fresh.view.dump()
    assert fresh.apply(DropImport(50, SLOT, MID)) == OK
    assert fresh.view.dump() == before


@pytest.mark.parametrize(
    ("start", "cmd"),
    [
        (lambda: target(SlotState.IMPORTING, mid=3), MigrateOut(50, SLOT, MID, 3)),
        (lambda: source(SlotState.RELEASED, mid=3), MigrateOut(50, SLOT, MID, 3)),
        (lambda: source(SlotState.MIGRATING, mid=3), ImportBegin(50, SLOT, MID, 3, 1)),
        (lambda: source(SlotState.FROZEN, mid=3), ImportBegin(50, SLOT, MID, 3, 1)),
        (lambda: target(SlotState.ACTIVE, mid=3), ImportBegin(50, SLOT, MID, 3, 1)),
    ],
    ids=["out-of-importing", "out-of-released", "in-to-migrating", "in-to-frozen", "in-to-active"],
)
def test_a_new_migration_cannot_start_from_the_wrong_side(
    start: Callable[[], Group], cmd: MoveCommand
) -> None:
    g = start()
    g.apply(Noop(50))
    before = g.view.dump()
    assert g.apply(cmd).status == Status.INVALID
    assert g.view.dump() == before


def test_a_slot_can_move_away_and_back() -> None:
    a, b = source(), target()
    a.apply(MigrateOut(20, SLOT, 1, DST))
    a.apply(Freeze(21, SLOT, 1))
    b.apply(ImportBegin(22, SLOT, 1, SRC, 1))
    b.apply(ImportChunk(23, SLOT, 1, 1, 1, tuple(a.view.scan(SLOT, None, 100)), ()))
    b.apply(Activate(24, SLOT, 1, 1))
    a.apply(Release(25, SLOT, 1))
    b.put(IN_KEYS[0], b"at b", now=26)
    # and back again, as migration 2
    assert b.apply(MigrateOut(30, SLOT, 2, SRC)) == OK
    assert a.apply(ImportBegin(31, SLOT, 2, DST, 1)) == OK
    b.apply(Freeze(32, SLOT, 2))
    a.apply(ImportChunk(33, SLOT, 2, 1, 1, tuple(b.view.scan(SLOT, None, 100)), ()))
    assert a.apply(Activate(34, SLOT, 2, 1)) == OK
    assert b.apply(Release(35, SLOT, 2)).ok
    assert a.value(IN_KEYS[0]) == b"at b"
    assert a.value(IN_KEYS[1]) == b"v1"
    moved = b.get(IN_KEYS[0])
    assert (moved.status, moved.int_value) == (Status.MOVED, SRC)
    # a delayed command of migration 1 is stale on both sides now
    assert a.apply(Release(36, SLOT, 1)).status == Status.INVALID
    assert b.apply(Activate(36, SLOT, 1, 1)).status == Status.INVALID


def test_a_replayed_step_of_an_aborted_migration_does_not_restart_it() -> None:
    g = source(SlotState.MIGRATING)
    assert g.apply(Unfreeze(50, SLOT, MID)) == OK
    assert g.apply(MigrateOut(51, SLOT, MID, DST)).status == Status.INVALID


# == sessions carried over ==================================================================
def test_sessions_remember_the_slot_of_their_last_write() -> None:
    g = source()
    g.put(IN_KEYS[0], b"x", now=20, client_id=4, seq=1)
    assert kv_sessions.last_slot(g.view, 4) == SLOT
    g.put(OUT_KEYS[0], b"x", now=21, client_id=4, seq=2)
    assert kv_sessions.last_slot(g.view, 4) == OTHER
    assert kv_sessions.last_slot(g.view, 99) == -1
    rec = kv_sessions.session_record(g.view, 4)
    assert rec is not None and rec[0] == 2
    assert kv_sessions.is_record(rec[1])
    assert kv_sessions.session_record(g.view, 99) is None


def test_a_session_record_of_the_old_four_item_form_has_no_slot() -> None:
    g = source()
    g.put(IN_KEYS[0], b"x", now=20, client_id=4, seq=1)
    g.view.put_meta(kv_sessions.SESSION_PREFIX + (4).to_bytes(8, "big"), pack((0, b"", 0, "")))
    assert kv_sessions.last_slot(g.view, 4) == -1
    assert g.put(IN_KEYS[0], b"y", now=21, client_id=4, seq=1) == OK  # still remembered


def test_an_imported_session_answers_a_retry_without_applying_it_again() -> None:
    src, dst = source(), target()
    incr = KvCommand(Op.INCRBY, b"{mv}n", delta=7, client_id=4, seq=3, now_ms=20)
    assert src.apply(incr) == KvResult(Status.OK, int_value=7)
    seq, raw = kv_sessions.session_record(src.view, 4) or (0, b"")
    dst.apply(ImportBegin(30, SLOT, MID, SRC, 1))
    dst.apply(chunk(1, tuple(src.view.scan(SLOT, None, 100)), now=30, sessions=((4, seq, raw),)))
    dst.apply(Activate(31, SLOT, MID, 1))
    assert dst.apply(incr._replace(now_ms=32)) == KvResult(Status.OK, int_value=7)
    assert dst.value(b"{mv}n") == b"7"
    assert dst.apply(incr._replace(seq=2, now_ms=33)).status == Status.INVALID  # stale
    assert dst.apply(incr._replace(seq=4, now_ms=34)) == KvResult(Status.OK, int_value=14)


def test_an_imported_session_never_replaces_a_later_answer() -> None:
    dst = target()
    dst.put(OUT_KEYS[0], b"mine", now=10, client_id=4, seq=9)  # the target answered seq 9
    dst.apply(ImportBegin(20, SLOT, MID, SRC, 1))
    older = pack((int(Status.OK), b"", 1, "", SLOT))
    dst.apply(chunk(1, sessions=((4, 5, older), (6, 2, older)), now=20))
    assert dst.put(OUT_KEYS[0], b"mine", now=21, client_id=4, seq=9) == OK
    assert dst.value(OUT_KEYS[0]) == b"mine"
    infos = {s.client_id: s for s in dst.sm.sessions(dst.view)}
    assert infos[4].seq == 9 and infos[6].seq == 2
    assert infos[6].result == KvResult(Status.OK, int_value=1)


# == the whole move under random traffic ====================================================
PAGE = 2  # keys per copy chunk: several chunks even for a few keys


def _live(view: MemoryKvView, slot: int, now: int) -> dict[bytes, tuple[bytes, int]]:
    return {
        k: decode_value(raw) for k, raw in view.scan(slot, None, 10_000) if not is_expired(raw, now)
    }


def _as_int(value: bytes) -> int | None:
    try:
        n = int(value)
    except ValueError:
        return None
    return n if b"%d" % n == value else None


@dataclass
class Model:
    """Redis semantics for the writes used here, on a dict ``key -> (value, expire_at)``."""

    data: dict[bytes, tuple[bytes, int]] = field(default_factory=dict)

    def live(self, key: bytes, now: int) -> tuple[bytes, int] | None:
        item = self.data.get(key)
        if item is not None and item[1] and item[1] <= now:
            del self.data[key]
            return None
        return item

    def apply(self, cmd: KvCommand) -> KvResult:
        now, key = cmd.now_ms, cmd.key
        cur = self.live(key, now)
        if cmd.op == Op.SET:
            self.data[key] = (cmd.value, now + cmd.ttl_ms if cmd.ttl_ms else 0)
            return OK
        if cmd.op == Op.DELETE:
            self.data.pop(key, None)
            return KvResult(Status.OK, int_value=int(cur is not None))
        if cmd.op == Op.INCRBY:
            n = 0 if cur is None else _as_int(cur[0])
            if n is None:
                return KvResult(Status.WRONGTYPE)
            self.data[key] = (b"%d" % (n + cmd.delta), 0 if cur is None else cur[1])
            return KvResult(Status.OK, int_value=n + cmd.delta)
        if cmd.op == Op.CAS:
            match = (
                cur is None if cmd.expected is None else cur is not None and cur[0] == cmd.expected
            )
            if not match:
                return KvResult(Status.NOT_APPLIED, *((cur[0], 1) if cur else (b"", 0)))
            self.data[key] = (cmd.value, 0)
            return OK
        assert cmd.op == Op.EXPIRE
        if cur is None:
            return KvResult(Status.OK, int_value=0)
        self.data[key] = (cur[0], now + cmd.ttl_ms)
        return KvResult(Status.OK, int_value=1)

    def contents(self, keys: tuple[bytes, ...], now: int) -> dict[bytes, tuple[bytes, int]]:
        return {k: v for k in keys if (v := self.live(k, now)) is not None}


def _same(got: KvResult, want: KvResult) -> bool:
    return (got.status, got.value, got.int_value) == (want.status, want.value, want.int_value)


_keys = st.sampled_from(IN_KEYS + OUT_KEYS)
_ops = st.one_of(
    st.builds(
        lambda k, v, ttl: KvCommand(Op.SET, k, v, ttl_ms=ttl),
        _keys,
        st.sampled_from([b"1", b"x", b"40"]),
        st.sampled_from([0, 0, 30, 200]),
    ),
    st.builds(lambda k: KvCommand(Op.DELETE, k), _keys),
    st.builds(lambda k, d: KvCommand(Op.INCRBY, k, delta=d), _keys, st.integers(-3, 5)),
    st.builds(
        lambda k, e, v: KvCommand(Op.CAS, k, v, expected=e),
        _keys,
        st.sampled_from([None, b"1", b"x"]),
        st.sampled_from([b"2", b"y"]),
    ),
    st.builds(lambda k, ttl: KvCommand(Op.EXPIRE, k, ttl_ms=ttl), _keys, st.sampled_from([1, 40])),
)
_clients = st.sampled_from([1, 2, 3])
_traffic = st.one_of(
    st.tuples(st.just("write"), _clients, _ops, st.integers(0, 40)),
    st.tuples(st.just("write"), _clients, _ops, st.integers(0, 40)),
    st.tuples(st.just("write"), _clients, _ops, st.integers(0, 40)),
    st.tuples(st.just("restart")),
    st.tuples(st.just("redeliver"), st.integers(0, 100)),
    st.tuples(st.just("replay")),
    st.tuples(st.just("sweep")),
    st.tuples(st.just("read"), _keys),
    st.tuples(st.just("retry"), _clients),
)
# Bursts of traffic, each followed by one step of the migration: every phase sees traffic.
_steps = st.lists(st.lists(_traffic, max_size=6), max_size=14).map(
    lambda bursts: [step for burst in bursts for step in (*burst, ("migrate",))]
)

# Phases of the driver (what has been applied so far).
NONE, MIGRATING, COPYING, FROZEN, FINAL, ACTIVE, RELEASED = range(7)


class Move:
    """Two groups, a model, clients with sessions, and an executor moving SLOT from SRC to
    DST the way the real one does: MigrateOut; ImportBegin; copy pages of the source's scan;
    Freeze; a final pass of dirty keys and of the sessions whose last write was in the
    slot; Activate; Release."""

    def __init__(self) -> None:
        self.src, self.dst = Group(SRC), Group(DST)
        self.model = Model()
        self.now = 1000
        self.phase = NONE
        self.attempt = 0
        self.chunk = 0
        self.cursor: bytes | None = None
        self.copied = False
        self.sent: list[ImportChunk] = []
        self.last_move: tuple[Group, MoveCommand] | None = None
        self.seq = {1: 0, 2: 0, 3: 0}
        self.pending: dict[int, KvCommand] = {}  # answered TRYAGAIN: the client retries it
        self.applied: dict[int, tuple[KvCommand, KvResult]] = {}  # each client's last answer

    # -- the executor ----------------------------------------------------------------------
    def move(self, g: Group, cmd: MoveCommand) -> KvResult:
        result = g.apply(cmd)
        assert result.ok, (cmd, result)
        self.last_move = (g, cmd)
        return result

    def send_chunk(
        self, puts: tuple[tuple[bytes, bytes | None], ...], sessions: tuple[Any, ...] = ()
    ) -> None:
        self.chunk += 1
        c = ImportChunk(self.now, SLOT, MID, self.attempt, self.chunk, puts, sessions)
        assert self.move(self.dst, c).int_value == len(puts)
        self.sent.append(c)

    def copy_page(self) -> None:
        page = tuple(self.src.view.scan(SLOT, self.cursor, PAGE))
        if not page:
            self.copied = True
            return
        self.send_chunk(page)
        self.cursor = page[-1][0]

    def final_pass(self) -> None:
        dirty = sorted(self.src.dirty())
        puts = tuple((k, self.src.view.get(SLOT, k)) for k in dirty)
        moving = tuple(
            (info.client_id, *rec)
            for info in self.src.sm.sessions(self.src.view)
            if kv_sessions.last_slot(self.src.view, info.client_id) == SLOT
            and (rec := kv_sessions.session_record(self.src.view, info.client_id)) is not None
        )
        for i in range(0, len(puts), PAGE):
            self.send_chunk(puts[i : i + PAGE])
        self.send_chunk((), moving)

    def step_migration(self) -> None:
        if self.phase == NONE:
            self.move(self.src, MigrateOut(self.now, SLOT, MID, DST))
            self.phase = MIGRATING
        elif self.phase == MIGRATING:
            self.begin_attempt()
            self.phase = COPYING
        elif self.phase in (COPYING, FROZEN) and not self.copied:
            self.copy_page()
        elif self.phase == COPYING:
            self.move(self.src, Freeze(self.now, SLOT, MID))
            self.phase = FROZEN
        elif self.phase == FROZEN:
            self.final_pass()
            self.phase = FINAL
        elif self.phase == FINAL:
            self.move(self.dst, Activate(self.now, SLOT, MID, self.attempt))
            self.phase = ACTIVE
        elif self.phase == ACTIVE:
            keys = len(self.src.slot_data())
            assert self.move(self.src, Release(self.now, SLOT, MID)).int_value == keys
            self.phase = RELEASED

    def begin_attempt(self) -> None:
        self.attempt += 1
        self.move(self.dst, ImportBegin(self.now, SLOT, MID, SRC, self.attempt))
        assert self.dst.slot_data() == {}
        self.chunk, self.cursor, self.copied = 0, None, False

    def restart(self) -> None:
        """Start the copy over (the executor lost track of it): a new attempt."""
        if self.phase in (COPYING, FROZEN, FINAL):
            self.begin_attempt()
            self.phase = min(self.phase, FROZEN)

    # -- clients ---------------------------------------------------------------------------
    def route(self, key: bytes) -> Group:
        return self.dst if key in IN_KEYS and self.phase >= ACTIVE else self.src

    def refusal(self, key: bytes, g: Group) -> tuple[Status, int] | None:
        """What ``g`` must answer for ``key`` instead of serving it, if anything."""
        if key not in IN_KEYS:
            return None
        if g is self.src:
            if self.phase in (FROZEN, FINAL, ACTIVE):
                return Status.TRYAGAIN, 0
            return (Status.MOVED, DST) if self.phase == RELEASED else None
        if self.phase in (COPYING, FROZEN, FINAL):
            return Status.TRYAGAIN, 0
        return None

    def write(self, client: int, op: KvCommand, dt: int) -> None:
        self.now += dt
        cmd = self.pending.get(client)
        if cmd is None:
            self.seq[client] += 1
            cmd = op._replace(client_id=client, seq=self.seq[client])
        cmd = cmd._replace(now_ms=self.now)
        for g in (self.src, self.dst):  # a client with a stale route tries the other group
            refused = self.refusal(cmd.key, g)
            if g is not self.route(cmd.key) and refused is not None:
                r = g.apply(cmd)
                assert (r.status, r.int_value) == refused, (cmd, r)
        g = self.route(cmd.key)
        result = g.apply(cmd)
        refused = self.refusal(cmd.key, g)
        if refused is not None:
            assert (result.status, result.int_value) == refused, (cmd, result)
            self.pending[client] = cmd
            return
        want = self.model.apply(cmd)
        assert _same(result, want), (cmd, result, want)
        self.pending.pop(client, None)
        self.applied[client] = (cmd, result)

    def retry(self, client: int) -> None:
        """The client lost the answer to its last write and sends it again, where the slot
        now lives: it gets the same answer and nothing is applied twice."""
        if client in self.pending or client not in self.applied:
            return
        cmd, answer = self.applied[client]
        g = self.route(cmd.key)
        data = (dict(self.src.view.data), dict(self.dst.view.data))
        assert g.apply(cmd._replace(now_ms=self.now)) == answer
        assert (self.src.view.data, self.dst.view.data) == data

    def read(self, key: bytes) -> None:
        for g in (self.src, self.dst):
            r = g.get(key, self.now)
            refused = self.refusal(key, g)
            if refused is not None:
                assert (r.status, r.int_value) == refused
            elif g is self.route(key):
                item = self.model.live(key, self.now)
                assert r == (KvResult(Status.OK, item[0]) if item else KvResult(Status.NOT_FOUND))

    def sweep(self) -> None:
        for g in (self.src, self.dst):
            expired = tuple(
                k
                for k in IN_KEYS + OUT_KEYS
                if (raw := g.view.get(key_slot(k), k)) is not None and is_expired(raw, self.now)
            )
            if expired:
                assert g.apply(ExpireSweep(self.now, expired)).ok

    # -- faults of the executor's transport --------------------------------------------------
    def redeliver(self, i: int) -> None:
        """A chunk sent earlier arrives again, late: it changes nothing whatever happened
        since (a duplicate of the current attempt is answered OK, one of a superseded
        attempt INVALID)."""
        if not self.sent:
            return
        data = dict(self.dst.view.data)
        late = self.sent[i % len(self.sent)]
        result = self.dst.apply(late._replace(now_ms=self.now))
        rec = self.dst.record()
        current = rec is None or rec.state != SlotState.IMPORTING or late.attempt == rec.attempt
        assert result == OK if current else "superseded" in result.error, result
        assert self.dst.view.data == data

    def replay(self) -> None:
        """The executor retries its last step (its answer was lost)."""
        if self.last_move is None:
            return
        g, cmd = self.last_move
        data = dict(g.view.data)
        assert g.apply(cmd._replace(now_ms=self.now)).ok
        assert g.view.data == data

    def run(self, steps: list[tuple[Any, ...]]) -> None:
        for kind, *args in steps:
            if kind == "migrate":
                self.step_migration()
            else:
                getattr(self, kind)(*args)
        while self.phase != RELEASED:
            self.step_migration()
        for client, cmd in sorted(self.pending.items()):  # the clients' retries land
            self.write(client, cmd, 1)
        assert not self.pending
        for client in sorted(self.applied):
            self.retry(client)

    def check(self) -> None:
        now = self.now
        assert _live(self.dst.view, SLOT, now) == self.model.contents(IN_KEYS, now)
        assert _live(self.src.view, OTHER, now) == self.model.contents(OUT_KEYS, now)
        assert self.src.slot_data() == {} and self.src.dirty() == set()
        assert self.dst.dirty() == set() and self.dst.slot_data(OTHER) == {}
        assert self.dst.record() == SlotRecord(SlotState.ACTIVE, MID, SRC)
        assert self.src.record() == SlotRecord(SlotState.RELEASED, MID, DST)


@settings(max_examples=150, deadline=None)
@given(_steps)
def test_a_slot_moves_between_groups_under_traffic_without_losing_or_repeating_writes(
    steps: list[tuple[Any, ...]],
) -> None:
    m = Move()
    m.run(steps)
    m.check()


def test_the_move_end_to_end_with_a_restart_and_late_chunks() -> None:
    """One fixed run of the property above, readable as a script."""
    m = Move()
    script: list[tuple[Any, ...]] = [
        ("write", 1, KvCommand(Op.SET, IN_KEYS[0], b"1"), 1),
        ("write", 2, KvCommand(Op.INCRBY, IN_KEYS[1], delta=4), 1),
        ("write", 3, KvCommand(Op.SET, IN_KEYS[2], b"x", ttl_ms=30), 1),
        ("write", 3, KvCommand(Op.SET, OUT_KEYS[0], b"stay"), 1),
        ("migrate",),  # MigrateOut
        ("migrate",),  # ImportBegin, attempt 1
        ("migrate",),  # chunk 1
        ("write", 1, KvCommand(Op.INCRBY, IN_KEYS[0], delta=1), 1),  # dirty
        ("restart",),  # attempt 2
        ("redeliver", 0),
        ("migrate",),
        ("migrate",),
        ("migrate",),  # copy done
        ("write", 2, KvCommand(Op.INCRBY, IN_KEYS[1], delta=1), 50),  # key 2 expires
        ("migrate",),  # Freeze
        ("write", 1, KvCommand(Op.DELETE, IN_KEYS[0]), 1),  # TRYAGAIN: pending
        ("retry", 2),  # answered from the session, even frozen
        ("migrate",),  # final pass
        ("redeliver", 1),
        ("migrate",),  # Activate
        ("retry", 2),  # answered from the imported session
        ("write", 2, KvCommand(Op.INCRBY, IN_KEYS[1], delta=10), 1),
        ("replay",),
    ]
    m.run(script)
    m.check()
    assert m.dst.value(IN_KEYS[1]) == b"15"
    assert m.dst.value(IN_KEYS[0]) is None  # the DELETE retried at the target
    assert m.src.value(OUT_KEYS[0]) == b"stay"
    assert m.attempt == 2


# == Freeze answers with the final pass ======================================================
def test_freeze_answers_with_the_dirty_keys_and_the_slots_sessions() -> None:
    g = source()
    g.put(IN_KEYS[1], b"before", now=15, client_id=9, seq=1)  # before MigrateOut: a session
    assert g.apply(MigrateOut(20, SLOT, MID, DST)) == OK
    g.put(IN_KEYS[0], b"changed", now=21, client_id=8, seq=4)
    g.apply(KvCommand(Op.DELETE, IN_KEYS[1], now_ms=22))
    g.put(OUT_KEYS[0], b"elsewhere", now=23, client_id=7, seq=2)  # another slot: not carried
    answer = g.apply(Freeze(30, SLOT, MID))
    assert answer.ok
    final = decode_final_pass(answer.value)
    assert final is not None
    clock, puts, sess = final
    assert clock == 30
    assert dict(puts) == {IN_KEYS[0]: g.view.get(SLOT, IN_KEYS[0]), IN_KEYS[1]: None}
    assert sorted((c, q) for c, q, _ in sess) == [(8, 4), (9, 1)]
    # a replayed Freeze answers the same
    assert decode_final_pass(g.apply(Freeze(31, SLOT, MID)).value) == (31, puts, sess)


def test_a_final_pass_too_big_to_carry_is_left_to_the_executor_to_read() -> None:
    g = source()
    assert g.apply(MigrateOut(20, SLOT, MID, DST)) == OK
    for i in range(MAX_CHUNK_KEYS + 1):
        g.put(b"{mv}bulk%d" % i, b"x", now=21)
    answer = g.apply(Freeze(30, SLOT, MID))
    assert answer.ok and decode_final_pass(answer.value) is None
