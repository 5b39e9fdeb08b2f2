"""How a user value is stored in the view: the value bytes and its absolute expiry.

Contract:
- Stored form: one tag byte, then
      0x00 | value                     no expiry
      0x01 | expire_at (u64 BE) | value  expires at ``expire_at`` (ms, state-machine clock)
  so a value without expiry costs one byte and the expiry is read without msgpack.
- A key is *live* at time ``now`` iff it is stored and (``expire_at == 0`` or
  ``expire_at > now``). An expired key is absent for every command, whether or not it has
  been deleted yet.
- ``is_expired`` is what the leader's expiry scanner uses to choose keys for an
  ``ExpireSweep``; the state machine re-checks each key when the sweep is applied.
- ``parse_int64`` accepts exactly what Redis's ``string2ll`` accepts: an optional ``-``, no
  ``+``, no spaces, no leading zeros, no ``-0``, within the signed 64-bit range.
- Pure: stdlib only.
"""

from __future__ import annotations

import re
import struct

from kvcluster.kv.view import CorruptKvState

__all__ = [
    "decode_value",
    "encode_value",
    "expire_at_of",
    "format_int64",
    "is_expired",
    "parse_int64",
]

_PLAIN = 0
_EXPIRING = 1
_HEAD = struct.Struct(">BQ")
_PLAIN_HEAD = b"\x00"
_INT64_RE = re.compile(rb"0|-?[1-9][0-9]{0,18}")
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def encode_value(value: bytes, expire_at: int) -> bytes:
    """The stored form of ``value`` expiring at ``expire_at`` (0: never)."""
    if expire_at:
        return _HEAD.pack(_EXPIRING, expire_at) + value
    return _PLAIN_HEAD + value


def decode_value(raw: bytes) -> tuple[bytes, int]:
    """``(value, expire_at)`` of a stored value."""
    if raw[:1] == _PLAIN_HEAD:
        return raw[1:], 0
    if len(raw) >= _HEAD.size and raw[0] == _EXPIRING:
        expire_at: int = _HEAD.unpack_from(raw)[1]
        return raw[_HEAD.size :], expire_at
    raise CorruptKvState(f"stored value has an unknown form: {raw[:16]!r}")


def expire_at_of(raw: bytes) -> int:
    """The expiry of a stored value (0: never) without copying the value."""
    if raw[:1] == _PLAIN_HEAD:
        return 0
    if len(raw) >= _HEAD.size and raw[0] == _EXPIRING:
        expire_at: int = _HEAD.unpack_from(raw)[1]
        return expire_at
    raise CorruptKvState(f"stored value has an unknown form: {raw[:16]!r}")


def is_expired(raw: bytes, now_ms: int) -> bool:
    """Whether a stored value is expired (absent) at ``now_ms``."""
    expire_at = expire_at_of(raw)
    return expire_at != 0 and expire_at <= now_ms


def parse_int64(value: bytes) -> int | None:
    """The integer a value spells in base 10 (Redis rules), or None if it is not one."""
    if _INT64_RE.fullmatch(value) is None:
        return None
    n = int(value)
    return n if _INT64_MIN <= n <= _INT64_MAX else None


def format_int64(n: int) -> bytes:
    return b"%d" % n
