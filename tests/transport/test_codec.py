"""The wire form of a Raft message: exact round trips, and strict refusal of anything else."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcluster.raft.types import (
    LOCAL_MESSAGES,
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)
from kvcluster.transport import WIRE_VERSION, CodecError, decode_message, encode_message

U64 = st.integers(min_value=0, max_value=2**64 - 1)
SMALL = st.integers(min_value=0, max_value=1000)
WIRE_TYPES = sorted(set(MessageType) - LOCAL_MESSAGES)

entries = st.builds(Entry, U64, U64, st.sampled_from(EntryType), st.binary(max_size=64))
snapshots = st.builds(
    Snapshot,
    st.builds(
        SnapshotMetadata,
        U64,
        U64,
        st.builds(
            ConfState,
            st.lists(U64, max_size=5).map(tuple),
            st.lists(U64, max_size=5).map(tuple),
        ),
    ),
    st.binary(max_size=256),
)
messages = st.builds(
    Message,
    type=st.sampled_from(WIRE_TYPES),
    to=U64,
    from_=U64,
    term=U64,
    log_term=U64,
    index=U64,
    entries=st.lists(entries, max_size=8),
    commit=U64,
    snapshot=st.none() | snapshots,
    reject=st.booleans(),
    reject_hint=U64,
    context=st.binary(max_size=32),
    read_seq=U64,
)


def _app(n: int = 3) -> Message:
    return Message(
        MessageType.APP,
        to=2,
        from_=1,
        term=5,
        log_term=4,
        index=10,
        commit=9,
        entries=[Entry(5, 11 + i, EntryType.NORMAL, b"x" * i) for i in range(n)],
    )


def _fields(m: Message) -> list[Any]:
    """The message as the positional wire array, built by hand (for crafting bad payloads)."""
    out: list[Any] = msgpack.unpackb(encode_message(m), raw=False)
    return out


@given(messages)
@settings(max_examples=300)
def test_round_trip(m: Message) -> None:
    out = decode_message(encode_message(m))
    assert out == m
    assert type(out.type) is MessageType
    assert all(type(e) is Entry and type(e.type) is EntryType for e in out.entries)


def test_round_trip_from_bytearray_and_memoryview() -> None:
    data = encode_message(_app())
    assert decode_message(bytearray(data)) == _app()
    assert decode_message(memoryview(data)) == _app()


@pytest.mark.parametrize("t", sorted(LOCAL_MESSAGES))
def test_local_messages_have_no_wire_form(t: MessageType) -> None:
    with pytest.raises(CodecError, match="local"):
        encode_message(Message(t))
    raw = _fields(_app())
    raw[1] = int(t)
    with pytest.raises(CodecError, match="local"):
        decode_message(msgpack.packb(raw, use_bin_type=True))


def test_unencodable_message_raises_codec_error() -> None:
    with pytest.raises(CodecError):
        encode_message(Message(MessageType.APP, term=2**64))
    with pytest.raises(CodecError):
        encode_message(Message(MessageType.APP, context=object()))  # type: ignore[arg-type]


def _pack(obj: object) -> bytes:
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


def _mutated(index: int, value: object) -> bytes:
    raw = _fields(_app())
    raw[index] = value
    return _pack(raw)


def _entry_mutated(field: int, value: object) -> bytes:
    raw = _fields(_app())
    entry = list(raw[12][1])
    entry[field] = value
    raw[12] = [raw[12][0], entry]
    return _pack(raw)


GOOD = encode_message(_app())
BAD_PAYLOADS = {
    "empty": b"",
    "truncated": GOOD[:-3],
    "trailing bytes": GOOD + b"\x00",
    "not msgpack": b"\xc1\xc1\xc1",
    "a map": msgpack.packb({"type": 11}),
    "a scalar": msgpack.packb(7),
    "too few fields": msgpack.packb(_fields(_app())[:-1], use_bin_type=True),
    "too many fields": msgpack.packb([*_fields(_app()), 0], use_bin_type=True),
    "future version": _mutated(0, WIRE_VERSION + 1),
    "version as str": _mutated(0, "1"),
    "unknown type": _mutated(1, 99),
    "type as float": _mutated(1, 11.0),
    "type as bool": _mutated(1, True),
    "negative term": _mutated(4, -1),
    "term as str": _mutated(4, "5"),
    "term as bool": _mutated(4, True),
    "reject as int": _mutated(8, 1),
    "context as str": _mutated(10, "ctx"),
    "entries as map": _mutated(12, {1: 2}),
    "entries as bin": _mutated(12, b"\x00"),
    "entry too short": _mutated(12, [[1, 2, 0]]),
    "entry as scalar": _mutated(12, [7]),
    "entry data as str": _entry_mutated(3, "data"),
    "entry negative index": _entry_mutated(1, -5),
    "entry unknown type": _entry_mutated(2, 9),
    "entry type as bool": _entry_mutated(2, True),
    "entry term as float": _entry_mutated(0, 1.5),
    "snapshot too short": _mutated(13, [1, 1, [], []]),
    "snapshot voters as int": _mutated(13, [1, 1, 3, [], b""]),
    "snapshot negative voter": _mutated(13, [1, 1, [-1], [], b""]),
    "snapshot data as str": _mutated(13, [1, 1, [1], [], "d"]),
    "ext type": _mutated(10, msgpack.ExtType(1, b"x")),
    "deep nesting": b"\x91" * 100_000,
    "invalid utf-8 str": _mutated(10, b"\xff").replace(b"\xc4\x01\xff", b"\xa1\xff"),
}


@pytest.mark.parametrize("name", sorted(BAD_PAYLOADS))
def test_malformed_payload_raises_codec_error(name: str) -> None:
    with pytest.raises(CodecError):
        decode_message(BAD_PAYLOADS[name])


@given(st.binary(max_size=200))
@settings(max_examples=500)
def test_arbitrary_bytes_never_raise_anything_but_codec_error(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode_message(data)


@given(messages, st.data())
@settings(max_examples=200)
def test_corrupted_payload_decodes_or_raises_codec_error(m: Message, data: st.DataObject) -> None:
    payload = bytearray(encode_message(m))
    i = data.draw(st.integers(0, len(payload) - 1))
    payload[i] = data.draw(st.integers(0, 255))
    with contextlib.suppress(CodecError):
        decode_message(bytes(payload))
