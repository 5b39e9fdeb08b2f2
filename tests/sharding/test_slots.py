"""key_slot against the Redis Cluster specification and against known Redis answers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvcluster.errors import InvalidArgument
from kvcluster.sharding import SLOT_COUNT, crc16, hash_tag, key_slot


def crc16_bitwise(data: bytes) -> int:
    """The spec's definition, one bit at a time: the oracle for the table-driven version."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def test_crc16_check_value_from_the_spec() -> None:
    # Redis Cluster spec, Appendix A: "Output for "123456789": 31C3".
    assert crc16(b"123456789") == 0x31C3
    assert crc16(b"") == 0


@given(st.binary(max_size=64))
def test_crc16_matches_bitwise_definition(data: bytes) -> None:
    assert crc16(data) == crc16_bitwise(data)


@pytest.mark.parametrize(
    ("key", "slot"),
    [
        # Answers of a real Redis (CLUSTER KEYSLOT), from its docs and from redis-py's tests.
        ("foo", 12182),
        ("bar", 5061),
        ("hello", 866),
        ("somekey", 11058),
        ("foo{hash_tag}", 2515),
        ("bar{hash_tag}", 2515),
        ("{user1}.following", 8106),
        # A published table of one key per slot (keys for slots 0..4).
        ("fyimk7v1CgnBo", 0),
        ("8HMdi", 1),
        ("IQhHSeAVHI", 2),
        ("N8mstVwJZoSaIg", 3),
        ("e2esUEU", 4),
    ],
)
def test_known_slots(key: str, slot: int) -> None:
    assert key_slot(key) == slot
    assert key_slot(key.encode()) == slot


@pytest.mark.parametrize(
    ("key", "hashed"),
    [
        # The examples of the Redis Cluster specification, "Hash tags".
        (b"{user1000}.following", b"user1000"),
        (b"{user1000}.followers", b"user1000"),
        (b"foo{}{bar}", b"foo{}{bar}"),
        (b"foo{{bar}}zap", b"{bar"),
        (b"foo{bar}{zap}", b"bar"),
        # Edge cases of the same rule.
        (b"", b""),
        (b"{", b"{"),
        (b"}", b"}"),
        (b"{}", b"{}"),
        (b"}{a}", b"a"),
        (b"{a", b"{a"),
        (b"a}b{", b"a}b{"),
        (b"{a}", b"a"),
        (b"x{}}", b"x{}}"),
        (b"{{}}", b"{"),
    ],
)
def test_hash_tag_rule(key: bytes, hashed: bytes) -> None:
    assert hash_tag(key) == hashed
    assert key_slot(key) == crc16(hashed) % SLOT_COUNT


def test_spec_examples_share_slots() -> None:
    assert key_slot("{user1000}.following") == key_slot("{user1000}.followers")
    assert key_slot("{user1000}.following") == key_slot("user1000")
    assert key_slot("foo{bar}{zap}") == key_slot("bar")
    assert key_slot("foo{{bar}}zap") == key_slot("{bar")
    assert key_slot("foo{}{bar}") == crc16(b"foo{}{bar}") % SLOT_COUNT


def test_str_keys_hash_as_utf8() -> None:
    assert key_slot("é{ü}") == key_slot("é{ü}".encode()) == key_slot("ü")
    assert key_slot(bytearray(b"foo")) == key_slot(memoryview(b"foo")) == 12182  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [None, 42, 1.5, ["foo"], "\ud800"])
def test_bad_keys_are_invalid_argument(bad: object) -> None:
    with pytest.raises(InvalidArgument):
        key_slot(bad)  # type: ignore[arg-type]


no_open = st.binary(max_size=16).filter(lambda b: b"{" not in b)
tag = st.binary(min_size=1, max_size=16).filter(lambda b: b"}" not in b)


@given(prefix=no_open, tag=tag, suffix=st.binary(max_size=16))
def test_tagged_key_lands_in_the_slot_of_its_tag(prefix: bytes, tag: bytes, suffix: bytes) -> None:
    key = prefix + b"{" + tag + b"}" + suffix
    assert hash_tag(key) == tag
    assert key_slot(key) == key_slot(tag)


@given(st.binary(max_size=32).filter(lambda b: b"{" not in b or b"}" not in b))
def test_key_without_braces_pair_hashes_whole(key: bytes) -> None:
    assert hash_tag(key) == key


@given(st.text(max_size=32))
def test_slot_in_range_and_str_equals_bytes(key: str) -> None:
    slot = key_slot(key)
    assert 0 <= slot < SLOT_COUNT
    assert slot == key_slot(key.encode("utf-8"))
