"""Keys to hash slots, exactly as Redis Cluster does it.

Contract:
- ``key_slot(key) == crc16(hash_tag(key)) % SLOT_COUNT`` where ``crc16`` is CRC16/XMODEM
  (polynomial 0x1021, initial value 0, no reflection, no final xor), the variant the Redis
  Cluster specification uses; ``crc16(b"123456789") == 0x31C3``.
- Hash tags: if the key contains ``{`` and a ``}`` somewhere after the *first* ``{`` with at least
  one byte between them, only the bytes between that first ``{`` and the first ``}`` after it are
  hashed; otherwise the whole key is. ``foo{}{bar}`` hashes the whole key, ``foo{{bar}}zap``
  hashes ``{bar``, ``foo{bar}{zap}`` hashes ``bar``.
- ``str`` keys are hashed as their UTF-8 bytes, so ``key_slot("é") == key_slot("é".encode())``.
  Anything else (``None``, ints, strings that cannot be encoded) is ``InvalidArgument``.
- Pure: stdlib only, no I/O; the same key gives the same slot on every node and client.
"""

from __future__ import annotations

import binascii

from kvcluster.errors import InvalidArgument

__all__ = ["SLOT_COUNT", "crc16", "hash_tag", "key_slot"]

SLOT_COUNT = 16384
"""Number of hash slots; slots are ``0 .. SLOT_COUNT - 1``."""


def crc16(data: bytes) -> int:
    """CRC16/XMODEM of ``data``: the standard library's ``binascii.crc_hqx`` (CRC-CCITT)
    with initial value 0 is exactly that variant, in C (~18x a Python table lookup)."""
    return binascii.crc_hqx(data, 0)


def _key_bytes(key: bytes | str) -> bytes:
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        try:
            return key.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidArgument(f"key is not encodable as UTF-8: {exc}") from None
    if isinstance(key, bytearray | memoryview):
        return bytes(key)
    raise InvalidArgument(f"key must be bytes or str, not {type(key).__name__}")


def hash_tag(key: bytes | str) -> bytes:
    """The bytes that ``key_slot`` hashes: the key's hash tag if it has one, else the whole key."""
    data = _key_bytes(key)
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            return data[start + 1 : end]
    return data


def key_slot(key: bytes | str) -> int:
    """The hash slot (``0 .. SLOT_COUNT - 1``) that owns ``key``."""
    return crc16(hash_tag(key)) & (SLOT_COUNT - 1)
