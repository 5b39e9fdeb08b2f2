"""The wire form of one Raft message: a compact positional msgpack array.

Contract:
- ``encode_message(m) -> bytes`` and ``decode_message(bytes) -> Message`` are exact inverses
  for every wire message (``tests/transport/test_codec.py`` checks it with hypothesis).
- Layout (``WIRE_VERSION`` 1), one msgpack array of 14 items::

      [version, type, to, from, term, log_term, index, commit, reject, reject_hint,
       context, read_seq, entries, snapshot]

      entries  = [[term, index, entry_type, data], ...]
      snapshot = nil | [index, term, [voter, ...], [learner, ...], data]

  ``bytes`` travel as msgpack bin (``use_bin_type=True``); integers are unsigned.
  Append new fields at the end and bump ``WIRE_VERSION``; never reorder.
- Decoding is strict: a payload that is not exactly this shape (wrong version, unknown or
  local message type, negative or non-integer numbers, str where bytes belong, trailing
  bytes, ...) raises ``CodecError`` and nothing else, so a receiver can skip it and count it.
- Local message types (``HUP``, ``BEAT``, ...) have no wire form: encoding one raises.
- This is the hot path of the transport: no per-field Python objects beyond the ones the
  ``Message`` needs; ``scripts/bench_transport.py`` measures it.
"""

from __future__ import annotations

from typing import Any, Final

import msgpack

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
from kvcluster.transport.errors import CodecError

__all__ = ["WIRE_VERSION", "decode_message", "encode_message"]

WIRE_VERSION: Final = 1
_FIELDS: Final = 14

_WIRE_TYPES: Final[dict[int, MessageType]] = {
    int(t): t for t in MessageType if t not in LOCAL_MESSAGES
}
_WIRE_TYPE_SET: Final = frozenset(_WIRE_TYPES.values())
_ENTRY_TYPES: Final[dict[int, EntryType]] = {int(t): t for t in EntryType}
_new_tuple: Final = tuple.__new__


def _packb(obj: object) -> bytes:
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


def _unpackb(data: bytes | bytearray | memoryview) -> Any:
    # use_list=False: arrays come back as tuples (cheaper, and immutable like our fields).
    return msgpack.unpackb(data, raw=False, use_list=False, strict_map_key=True)


def encode_message(m: Message) -> bytes:
    """The wire form of ``m``. Raises ``CodecError`` if ``m`` has none."""
    t = m.type
    if t not in _WIRE_TYPE_SET:
        raise CodecError(f"message type {t!r} is local and never travels between nodes")
    snap = m.snapshot
    if snap is None:
        wire_snap: tuple[object, ...] | None = None
    else:
        md = snap.metadata
        cs = md.conf_state
        wire_snap = (md.index, md.term, cs.voters, cs.learners, snap.data)
    try:
        # Entry is a NamedTuple, so the entry list packs as arrays with no conversion.
        return _packb(
            (
                WIRE_VERSION,
                t,
                m.to,
                m.from_,
                m.term,
                m.log_term,
                m.index,
                m.commit,
                m.reject,
                m.reject_hint,
                m.context,
                m.read_seq,
                m.entries,
                wire_snap,
            )
        )
    except (TypeError, ValueError, OverflowError) as e:
        raise CodecError(f"cannot encode {t.name} message: {e}") from e


def _bad(what: str) -> CodecError:
    return CodecError(f"malformed raft message: {what}")


def _uint(v: object, name: str) -> int:
    if type(v) is not int or v < 0:
        raise _bad(f"{name} must be an unsigned integer, got {type(v).__name__}")
    return v


def _uints(v: object, name: str) -> tuple[int, ...]:
    if type(v) is not tuple:
        raise _bad(f"{name} must be an array")
    for x in v:
        _uint(x, name)
    return v


def _bytes(v: object, name: str) -> bytes:
    if type(v) is not bytes:
        raise _bad(f"{name} must be bin, got {type(v).__name__}")
    return v


def _entries(raw: object) -> list[Entry]:
    if type(raw) is not tuple:
        raise _bad("entries must be an array")
    etypes = _ENTRY_TYPES
    # Build first (one C-level tuple.__new__ per entry), then check the field types in a
    # second tight loop: measurably cheaper than one loop that validates before building.
    try:
        out = [_new_tuple(Entry, (t, i, etypes[ty], d)) for t, i, ty, d in raw]
    except (KeyError, TypeError, ValueError):
        raise _bad("an entry must be [term, index, entry_type, data]") from None
    for t, i, ty, d in raw:
        if (
            type(t) is not int
            or type(i) is not int
            or type(ty) is not int
            or type(d) is not bytes
            or t < 0
            or i < 0
        ):
            raise _bad(f"bad entry {[type(x).__name__ for x in (t, i, ty, d)]}")
    return out


def _snapshot(raw: object) -> Snapshot | None:
    if raw is None:
        return None
    if type(raw) is not tuple or len(raw) != 5:
        raise _bad("snapshot must be nil or an array of 5 items")
    index, term, voters, learners, data = raw
    return Snapshot(
        SnapshotMetadata(
            _uint(index, "snapshot index"),
            _uint(term, "snapshot term"),
            ConfState(_uints(voters, "voters"), _uints(learners, "learners")),
        ),
        _bytes(data, "snapshot data"),
    )


def decode_message(data: bytes | bytearray | memoryview) -> Message:
    """The message encoded in ``data``. Raises ``CodecError`` (only) if it is not one."""
    try:
        obj = _unpackb(data)
    except Exception as e:  # msgpack raises a zoo: ExtraData, FormatError, StackError, ...
        raise _bad(f"not a msgpack value ({type(e).__name__}: {e})") from None
    if type(obj) is not tuple or len(obj) != _FIELDS:
        raise _bad(f"expected an array of {_FIELDS} items")
    (
        version,
        t,
        to,
        from_,
        term,
        log_term,
        index,
        commit,
        reject,
        reject_hint,
        context,
        read_seq,
        raw_entries,
        raw_snap,
    ) = obj
    if version != WIRE_VERSION or type(version) is not int:
        raise CodecError(f"unsupported wire version {version!r} (this node speaks {WIRE_VERSION})")
    mtype = _WIRE_TYPES.get(t) if type(t) is int else None
    if mtype is None:
        raise _bad(f"unknown or local message type {t!r}")
    if not (
        type(to) is int
        and type(from_) is int
        and type(term) is int
        and type(log_term) is int
        and type(index) is int
        and type(commit) is int
        and type(reject_hint) is int
        and type(read_seq) is int
        and min(to, from_, term, log_term, index, commit, reject_hint, read_seq) >= 0
    ):
        raise _bad(_which_not_uint(obj))
    if type(reject) is not bool:
        raise _bad("reject must be a boolean")
    # Positional, in Message's field order (cheaper than keywords on this path).
    return Message(
        mtype,
        to,
        from_,
        term,
        log_term,
        index,
        [] if raw_entries == () else _entries(raw_entries),
        commit,
        None if raw_snap is None else _snapshot(raw_snap),
        reject,
        reject_hint,
        context if type(context) is bytes else _bytes(context, "context"),
        read_seq,
    )


_UINT_FIELDS: Final = (
    (2, "to"),
    (3, "from"),
    (4, "term"),
    (5, "log_term"),
    (6, "index"),
    (7, "commit"),
    (9, "reject_hint"),
    (11, "read_seq"),
)


def _which_not_uint(obj: tuple[object, ...]) -> str:
    for i, name in _UINT_FIELDS:
        v = obj[i]
        if type(v) is not int or v < 0:
            return f"{name} must be an unsigned integer, got {v!r}"
    raise AssertionError("unreachable")  # pragma: no cover
