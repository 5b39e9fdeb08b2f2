"""The Raft-log form of kv commands: round trips, strict decoding, limits at the edge."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvcluster.errors import InvalidArgument
from kvcluster.kv import (
    MAX_KEY_BYTES,
    MAX_NOW_MS,
    MAX_SWEEP_KEYS,
    MAX_TTL_MS,
    MAX_VALUE_BYTES,
    ExpireSweep,
    KvCommand,
    KvStateMachine,
    MalformedCommand,
    MemoryKvView,
    Noop,
    Op,
    SetFlag,
    Status,
    decode_command,
    encode_command,
    validate_request,
)

I64 = st.integers(-(2**63), 2**63 - 1)
U64 = st.integers(0, 2**64 - 1)

client_commands = st.builds(
    KvCommand,
    op=st.sampled_from(list(Op)),
    key=st.binary(max_size=40),
    value=st.binary(max_size=40),
    expected=st.none() | st.binary(max_size=10),
    ttl_ms=I64,
    delta=I64,
    flags=st.integers(0, 2**32 - 1),
    client_id=U64,
    seq=U64,
    now_ms=st.integers(0, MAX_NOW_MS),
)
sweeps = st.builds(
    ExpireSweep,
    now_ms=st.integers(0, MAX_NOW_MS),
    keys=st.lists(st.binary(max_size=20), max_size=5).map(tuple),
)
noops = st.builds(Noop, now_ms=st.integers(0, MAX_NOW_MS))


@given(client_commands | sweeps | noops)
def test_every_command_round_trips(cmd: KvCommand | ExpireSweep | Noop) -> None:
    data = encode_command(cmd)
    assert decode_command(data) == cmd
    assert type(decode_command(data)) is type(cmd)
    assert encode_command(decode_command(data)) == data


def test_wire_form_is_a_compact_positional_array() -> None:
    cmd = KvCommand(Op.SET, b"user:1", b"alice", client_id=7, seq=3, now_ms=1_700_000_000_000)
    data = encode_command(cmd)
    assert msgpack.unpackb(data) == [2, b"user:1", b"alice", None, 0, 0, 0, 7, 3, cmd.now_ms]
    assert len(data) <= 38
    assert msgpack.unpackb(encode_command(Noop(5))) == [100, 5]
    assert msgpack.unpackb(encode_command(ExpireSweep(5, (b"k",)))) == [101, 5, [b"k"]]


def test_expire_sweep_size_is_bounded_when_proposed() -> None:
    keys = tuple(b"k%d" % i for i in range(MAX_SWEEP_KEYS))
    assert decode_command(encode_command(ExpireSweep(1, keys))) == ExpireSweep(1, keys)
    with pytest.raises(InvalidArgument, match="the limit is 1000"):
        encode_command(ExpireSweep(1, (*keys, b"one more")))


def test_encode_refuses_what_is_not_a_command() -> None:
    with pytest.raises(InvalidArgument, match="not a kv command: tuple"):
        encode_command((2, b"k"))  # type: ignore[arg-type]


def test_empty_entry_is_a_noop() -> None:
    # A new Raft leader appends an entry with empty data.
    assert decode_command(b"") == Noop(0)


def _raw(*items: object) -> bytes:
    data: bytes = msgpack.packb(list(items), use_bin_type=True)
    return data


GOOD = [2, b"k", b"v", None, 0, 0, 0, 0, 0, 1000]


def _with(i: int, value: object) -> bytes:
    items: list[object] = list(GOOD)
    items[i] = value
    return _raw(*items)


MALFORMED = {
    "reserved byte": b"\xc1",
    "truncated": _raw(*GOOD)[:-3],
    "trailing bytes": _raw(*GOOD) + b"\x00",
    "text": b"hello world",
    "a map": msgpack.packb({b"op": 2}),
    "a bare int": msgpack.packb(2),
    "empty array": _raw(),
    "9 fields": _raw(*GOOD[:9]),
    "11 fields": _raw(*GOOD, 0),
    "op 0": _with(0, 0),
    "op 10": _with(0, 10),
    "op as str": _with(0, "SET"),
    "op as bool": _with(0, True),
    "key as str": _with(1, "k"),
    "key nil": _with(1, None),
    "value as str": _with(2, "v"),
    "expected as int": _with(3, 5),
    "ttl as float": _with(4, 1.5),
    "ttl over int64": _with(4, 2**63),
    "delta over int64": _with(5, 2**63),
    "flags negative": _with(6, -1),
    "flags over u32": _with(6, 2**32),
    "client_id negative": _with(7, -1),
    "seq negative": _with(8, -1),
    "now negative": _with(9, -1),
    "now too large": _with(9, MAX_NOW_MS + 1),
    "now as bool": _with(9, False),
    "noop with 3 fields": _raw(100, 1, 2),
    "noop now as str": _raw(100, "1"),
    "sweep key as str": _raw(101, 1, ["k"]),
    "sweep keys not an array": _raw(101, 1, b"k"),
    "unknown tag": _raw(99, 1),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_data_raises_a_typed_error(data: bytes) -> None:
    with pytest.raises(MalformedCommand, match="malformed command") as exc:
        decode_command(data)
    assert isinstance(exc.value, InvalidArgument)


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_applying_malformed_data_changes_nothing(data: bytes) -> None:
    sm = KvStateMachine(lambda k: 0, max_sessions=2)
    view = MemoryKvView()
    sm.apply(view, 1, encode_command(KvCommand(Op.SET, b"k", b"1", ttl_ms=50, now_ms=10)))
    sm.apply(view, 2, encode_command(KvCommand(Op.INCRBY, b"n", delta=1, client_id=1, seq=1)))
    before = view.dump()
    result = sm.apply(view, 3, data)
    assert result.status == Status.INVALID
    assert result.error.startswith("entry 3: malformed command")
    assert view.dump() == before  # not even the clock moved


@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedCommand):
        decode_command(data)


# -- validate_request -----------------------------------------------------------------------
VALID = [
    KvCommand(Op.GET, b"k"),
    KvCommand(Op.GET, b"k", client_id=5),  # reads carry no session: seq may be 0
    KvCommand(Op.SET, b"", b""),
    KvCommand(Op.SET, b"k" * MAX_KEY_BYTES, b"v" * MAX_VALUE_BYTES),
    KvCommand(Op.SET, b"k", b"v", flags=SetFlag.NX | SetFlag.KEEPTTL),
    KvCommand(Op.SET, b"k", b"v", ttl_ms=MAX_TTL_MS, flags=SetFlag.XX),
    KvCommand(Op.CAS, b"k", b"v", expected=b"x" * MAX_VALUE_BYTES, flags=SetFlag.KEEPTTL),
    KvCommand(Op.INCRBY, b"k", delta=-(2**63), client_id=2**64 - 1, seq=2**64 - 1),
    KvCommand(Op.EXPIRE, b"k", ttl_ms=1),
    KvCommand(Op.DELETE, b"k", b"ignored value", client_id=1, seq=1),
]


@pytest.mark.parametrize("cmd", VALID)
def test_valid_requests_pass(cmd: KvCommand) -> None:
    validate_request(cmd)


INVALID: list[tuple[KvCommand, str]] = [
    (KvCommand(0, b"k"), "unknown op 0"),
    (KvCommand(10, b"k"), "unknown op 10"),
    (KvCommand(True, b"k"), "unknown op"),
    (KvCommand(Op.GET, "k"), "key must be bytes, not str"),  # type: ignore[arg-type]
    (KvCommand(Op.SET, b"k", None), "value must be bytes"),  # type: ignore[arg-type]
    (KvCommand(Op.CAS, b"k", b"v", expected="x"), "expected must be bytes"),  # type: ignore[arg-type]
    (KvCommand(Op.SET, b"k", b"v", ttl_ms=1.5), "ttl_ms must be a signed 64-bit integer, got 1.5"),  # type: ignore[arg-type]
    (
        KvCommand(Op.SET, b"k" * (MAX_KEY_BYTES + 1)),
        f"key is 501 bytes; the limit is {MAX_KEY_BYTES}",
    ),
    (KvCommand(Op.GET, b"k" * (MAX_KEY_BYTES + 1)), "key is 501 bytes"),
    (KvCommand(Op.SET, b"k", b"v" * (MAX_VALUE_BYTES + 1)), "value is 1048577 bytes; the limit"),
    (KvCommand(Op.CAS, b"k", expected=b"v" * (MAX_VALUE_BYTES + 1)), "expected is 1048577"),
    (KvCommand(Op.SET, b"k", flags=SetFlag.NX | SetFlag.XX), "NX and XX are mutually exclusive"),
    (KvCommand(Op.SET, b"k", flags=8), "unknown SET flags 0x8"),
    (KvCommand(Op.CAS, b"k", flags=SetFlag.NX), "not allowed with CAS"),
    (KvCommand(Op.SET, b"k", ttl_ms=5, flags=SetFlag.KEEPTTL), "KEEPTTL and ttl_ms"),
    (KvCommand(Op.SET, b"k", ttl_ms=-1), "ttl_ms must be in 0.."),
    (KvCommand(Op.SET, b"k", ttl_ms=MAX_TTL_MS + 1), "ttl_ms must be in 0.."),
    (KvCommand(Op.EXPIRE, b"k", ttl_ms=0), "EXPIRE needs ttl_ms in 1.."),
    (KvCommand(Op.EXPIRE, b"k", ttl_ms=-5), "EXPIRE needs ttl_ms"),
    (KvCommand(Op.INCRBY, b"k", delta=2**63), "delta must fit"),
    (KvCommand(Op.SET, b"k", client_id=3, seq=0), "seq must be >= 1 when client_id is set"),
    (KvCommand(Op.SET, b"k", client_id=-1, seq=1), "client_id must be an unsigned 64-bit"),
    (KvCommand(Op.SET, b"k", client_id=1, seq=2**64), "seq must be an unsigned 64-bit"),
    (KvCommand(Op.SET, b"k", client_id=1, seq=True), "seq must be an unsigned 64-bit"),
    (KvCommand(Op.SET, b"k", flags=2**32), "flags must be an unsigned 32-bit integer"),
    (KvCommand(Op.SET, b"k", ttl_ms=2**63), "ttl_ms must be a signed 64-bit integer"),
    (KvCommand(Op.INCRBY, b"k", delta="1"), "delta must be an int, not str"),  # type: ignore[arg-type]
    (KvCommand(Op.SET, bytearray(b"k")), "key must be bytes, not bytearray"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("cmd", "message"), INVALID, ids=[m for _, m in INVALID])
def test_invalid_requests_raise_invalid_argument(cmd: KvCommand, message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        validate_request(cmd)
    assert message in str(exc.value)


def test_the_key_limit_fits_the_storage_layout() -> None:
    # LMDB (py-lmdb's bundled build) refuses keys over 511 bytes; storage prefixes each user
    # key with group id and slot. If either changes, MAX_KEY_BYTES must be revisited.
    codec = pytest.importorskip("kvcluster.storage.codec")
    assert MAX_KEY_BYTES + codec.KEY_OVERHEAD <= 511


def test_numbers_match_the_protobuf_enums() -> None:
    kv_pb2 = pytest.importorskip("kvcluster.v1.kv_pb2")
    assert {op.name: int(op) for op in Op} == {
        name: number for name, number in kv_pb2.Op.items() if name != "OP_UNSPECIFIED"
    }
    for status in Status:
        assert kv_pb2.Status.Value(status.name) == status
    for flag in (SetFlag.NX, SetFlag.XX, SetFlag.KEEPTTL):
        assert kv_pb2.SetFlag.Value(flag.name) == flag
