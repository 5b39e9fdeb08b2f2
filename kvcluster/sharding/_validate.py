"""Input checks shared by the sharding values (private).

Contract: every helper either returns the value, narrowed to the type asked for, or raises
``InvalidArgument`` naming the offending field. ``bool`` is never accepted where an ``int`` is
expected (``True`` is an ``int`` in Python, but never a slot, group id or epoch). Inputs come
from decoded JSON/msgpack, so sequences may be lists or tuples, never ``str``/``bytes``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kvcluster.errors import InvalidArgument
from kvcluster.sharding.slots import SLOT_COUNT

__all__ = [
    "MAX_EPOCH",
    "MAX_GROUP_ID",
    "require_fields",
    "require_group_id",
    "require_int",
    "require_sequence",
    "require_slot",
    "require_str",
]

MAX_GROUP_ID = 0xFFFE
"""Largest group id; ``0xFFFF`` is reserved as the "unowned" marker in the packed slot table."""

MAX_EPOCH = 2**64 - 1
"""Largest epoch: fits msgpack's unsigned 64-bit integers."""


def require_int(value: object, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{what} must be an int, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise InvalidArgument(f"{what} must be in [{lo}, {hi}], got {value}")
    return value


def require_slot(value: object, what: str = "slot") -> int:
    return require_int(value, what, 0, SLOT_COUNT - 1)


def require_group_id(value: object, what: str = "group id") -> int:
    return require_int(value, what, 0, MAX_GROUP_ID)


def require_str(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{what} must be a non-empty str, got {value!r}")
    return value


def require_sequence(value: object, what: str) -> Sequence[object]:
    if not isinstance(value, list | tuple):
        raise InvalidArgument(f"{what} must be a list, not {type(value).__name__}")
    return value


def require_fields(
    value: object, what: str, required: frozenset[str], optional: frozenset[str] = frozenset()
) -> Mapping[str, object]:
    """``value`` as a mapping that has every ``required`` key and no key outside both sets."""
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"{what} must be a mapping, not {type(value).__name__}")
    keys = set(value)
    missing = required - keys
    if missing:
        raise InvalidArgument(f"{what} is missing {sorted(missing)}")
    unknown = keys - required - optional
    if unknown:
        raise InvalidArgument(f"{what} has unknown keys {sorted(map(repr, unknown))}")
    return value
