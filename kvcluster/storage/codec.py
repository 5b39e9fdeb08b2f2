"""The on-disk encoding of every key and value the node store writes.

Contract:
- All layout decisions live here and nowhere else; other modules call these functions.
- Keys sort the way they are scanned: a fixed-width big-endian group id first, so one group's
  records are one contiguous range in every sub-database.
    log   group(4) | index(8)              -> term(8) | entry type(1) | data
    meta  group(4) | tag(1)                -> per tag (see ``MetaTag``)
    kv    group(4) | slot(2) | user key    -> value (opaque bytes of the state machine)
          group(4) | 0xFFFF   | name        -> a state-machine meta record (``SM_META_SLOT``)
    snap  group(4) | chunk number(4)       -> a slice of the snapshot data
    node  b"format" / b"identity"          -> format version / msgpack identity record
- Slot 0xFFFF is never a data slot (there are 16384): it holds the state machine's own meta
  records (clock, sessions), so a range scan of the group -- a snapshot, a drop -- carries
  them along with the data.
- Fixed-width records use ``struct``; variable ones (conf state, snapshot metadata,
  identity) use msgpack arrays. Bump ``FORMAT_VERSION`` on any incompatible change.
- kv snapshot data ("kv form") is ``SNAPSHOT_MAGIC`` followed by a msgpack stream of
  ``[slot, key, value]`` arrays in key order. The stream may be cut into chunks anywhere:
  chunk boundaries carry no meaning, so a receiver just concatenates or feeds them in order.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Iterator
from typing import Any

import msgpack  # type: ignore[import-untyped,unused-ignore]

from kvcluster.raft.types import ConfState, Entry, EntryType, HardState
from kvcluster.storage.errors import CorruptSnapshot

__all__ = [
    "DATA_SLOT_MAX",
    "FORMAT_VERSION",
    "GROUP_MAX",
    "GROUP_OPAQUE",
    "KEY_OVERHEAD",
    "SLOT_MAX",
    "SM_META_SLOT",
    "SNAPSHOT_MAGIC",
    "MetaTag",
    "SnapshotRecord",
    "decode_applied",
    "decode_conf_record",
    "decode_entry",
    "decode_format",
    "decode_group_flags",
    "decode_hard_state",
    "decode_identity",
    "decode_kv_snapshot",
    "decode_log_offset",
    "decode_snapshot_record",
    "encode_applied",
    "encode_conf_record",
    "encode_entry",
    "encode_format",
    "encode_group_flags",
    "encode_hard_state",
    "encode_identity",
    "encode_kv_snapshot",
    "encode_log_offset",
    "encode_snapshot_record",
    "entry_term",
    "group_of",
    "group_prefix",
    "is_kv_snapshot",
    "kv_key",
    "log_index_of",
    "log_key",
    "meta_key",
    "slot_prefix",
    "snap_chunk_key",
    "split_kv_key",
]

FORMAT_VERSION = 1
GROUP_MAX = 2**32 - 1
SLOT_MAX = 2**16 - 1
"""The largest slot the 2-byte slot field holds."""
DATA_SLOT_MAX = SLOT_MAX - 1
SM_META_SLOT = SLOT_MAX
"""The reserved slot of the state machine's meta records."""
KEY_OVERHEAD = 6
"""Bytes the kv key adds in front of a user key (group + slot)."""

SNAPSHOT_MAGIC = b"KVCSNAP\x01"

_GROUP = struct.Struct(">I")
_LOG_KEY = struct.Struct(">IQ")
_META_KEY = struct.Struct(">IB")
_SLOT_PREFIX = struct.Struct(">IH")
_CHUNK_KEY = struct.Struct(">II")
_ENTRY_HEAD = struct.Struct(">QB")
_U64 = struct.Struct(">Q")
_U64X2 = struct.Struct(">QQ")
_U64X3 = struct.Struct(">QQQ")
_U32 = struct.Struct(">I")
_ENTRY_TYPES = {int(t): t for t in EntryType}


class MetaTag(enum.IntEnum):
    """The second part of a ``meta`` key: which record of the group it is."""

    GROUP = 0  # presence marker + flags (1 byte); sorts first: listing groups is a seek each
    HARD_STATE = 1  # term, vote, commit
    CONF_STATE = 2  # [index, voters, learners]: membership as applied at ``index``
    SNAPSHOT = 3  # SnapshotRecord
    APPLIED = 4  # the state machine's applied index
    LOG_OFFSET = 5  # the compaction point: index and term of the log's dummy entry


# -- keys -----------------------------------------------------------------------------------
def group_prefix(group: int) -> bytes:
    return _GROUP.pack(group)


def group_of(key: bytes) -> int:
    group: int = _GROUP.unpack_from(key)[0]
    return group


def log_key(group: int, index: int) -> bytes:
    return _LOG_KEY.pack(group, index)


def log_index_of(key: bytes) -> int:
    index: int = _LOG_KEY.unpack(key)[1]
    return index


def meta_key(group: int, tag: MetaTag) -> bytes:
    return _META_KEY.pack(group, tag)


def slot_prefix(group: int, slot: int) -> bytes:
    return _SLOT_PREFIX.pack(group, slot)


def kv_key(group: int, slot: int, key: bytes) -> bytes:
    return _SLOT_PREFIX.pack(group, slot) + key


def split_kv_key(raw: bytes) -> tuple[int, bytes]:
    """(slot, user key) of a kv key."""
    slot: int = _SLOT_PREFIX.unpack_from(raw)[1]
    return slot, raw[KEY_OVERHEAD:]


def snap_chunk_key(group: int, chunk: int) -> bytes:
    return _CHUNK_KEY.pack(group, chunk)


# -- log entries ----------------------------------------------------------------------------
def encode_entry(entry: Entry) -> bytes:
    return _ENTRY_HEAD.pack(entry.term, entry.type) + entry.data


def decode_entry(index: int, value: bytes) -> Entry:
    term, etype = _ENTRY_HEAD.unpack_from(value)
    return Entry(term, index, _ENTRY_TYPES[etype], value[_ENTRY_HEAD.size :])


def entry_term(value: bytes) -> int:
    term: int = _U64.unpack_from(value)[0]
    return term


# -- fixed-width meta records ---------------------------------------------------------------
def encode_hard_state(hs: HardState) -> bytes:
    return _U64X3.pack(hs.term, hs.vote, hs.commit)


def decode_hard_state(value: bytes) -> HardState:
    term, vote, commit = _U64X3.unpack(value)
    return HardState(term, vote, commit)


def encode_applied(index: int) -> bytes:
    return _U64.pack(index)


def decode_applied(value: bytes) -> int:
    index: int = _U64.unpack(value)[0]
    return index


def encode_log_offset(index: int, term: int) -> bytes:
    return _U64X2.pack(index, term)


def decode_log_offset(value: bytes) -> tuple[int, int]:
    index, term = _U64X2.unpack(value)
    return index, term


def encode_format(version: int) -> bytes:
    return _U32.pack(version)


def decode_format(value: bytes) -> int:
    version: int = _U32.unpack(value)[0]
    return version


# -- msgpack meta records -------------------------------------------------------------------
def _pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def _unpack(value: bytes) -> Any:
    return msgpack.unpackb(value, raw=False, use_list=True)


def encode_conf_record(index: int, cs: ConfState) -> bytes:
    return _pack([index, list(cs.voters), list(cs.learners)])


def decode_conf_record(value: bytes) -> tuple[int, ConfState]:
    index, voters, learners = _unpack(value)
    return int(index), ConfState(tuple(voters), tuple(learners))


class SnapshotRecord:
    """Snapshot metadata plus where its data lives: ``chunks`` values in ``snap``."""

    __slots__ = ("chunks", "conf_state", "index", "size", "term")

    def __init__(self, index: int, term: int, conf_state: ConfState, chunks: int, size: int):
        self.index = index
        self.term = term
        self.conf_state = conf_state
        self.chunks = chunks
        self.size = size


def encode_snapshot_record(rec: SnapshotRecord) -> bytes:
    cs = rec.conf_state
    return _pack([rec.index, rec.term, list(cs.voters), list(cs.learners), rec.chunks, rec.size])


def decode_snapshot_record(value: bytes) -> SnapshotRecord:
    index, term, voters, learners, chunks, size = _unpack(value)
    return SnapshotRecord(index, term, ConfState(tuple(voters), tuple(learners)), chunks, size)


def encode_identity(cluster_id: str, node_id: int) -> bytes:
    return _pack([cluster_id, node_id])


def decode_identity(value: bytes) -> tuple[str, int]:
    cluster_id, node_id = _unpack(value)
    return str(cluster_id), int(node_id)


# -- kv snapshot data -----------------------------------------------------------------------
GROUP_OPAQUE = 0x01
"""Group flag: snapshot data is supplied by the caller and stored verbatim (not kv form)."""


def encode_group_flags(opaque: bool) -> bytes:
    return bytes([GROUP_OPAQUE if opaque else 0])


def decode_group_flags(value: bytes) -> bool:
    """Whether the group's snapshots are opaque."""
    return bool(value and value[0] & GROUP_OPAQUE)


def is_kv_snapshot(data: bytes) -> bool:
    return data[: len(SNAPSHOT_MAGIC)] == SNAPSHOT_MAGIC


def encode_kv_snapshot(
    items: Iterable[tuple[int, bytes, bytes]], chunk_size: int
) -> Iterator[bytes]:
    """Chunks of kv-form snapshot data for ``(slot, key, value)`` items; each chunk but the
    last holds at least ``chunk_size`` bytes. A msgpack nil ends the stream, so a truncated
    transfer is detected."""
    packer = msgpack.Packer(use_bin_type=True)
    buf = bytearray(SNAPSHOT_MAGIC)
    for slot, key, value in items:
        buf += packer.pack([slot, key, value])
        if len(buf) >= chunk_size:
            yield bytes(buf)
            buf.clear()
    buf += packer.pack(None)
    yield bytes(buf)


def decode_kv_snapshot(chunks: Iterable[bytes]) -> Iterator[tuple[int, bytes, bytes]]:
    """The ``(slot, key, value)`` items of kv-form data given as chunks in order.

    Raises CorruptSnapshot on a missing magic, a malformed item, a missing end marker or
    bytes after it.
    """
    unpacker = msgpack.Unpacker(raw=False, use_list=True, max_buffer_size=2**31 - 1)
    head = b""
    ended = False
    for chunk in chunks:
        if len(head) < len(SNAPSHOT_MAGIC):
            need = len(SNAPSHOT_MAGIC) - len(head)
            head += bytes(chunk[:need])
            chunk = chunk[need:]
            if len(head) < len(SNAPSHOT_MAGIC):
                continue
            if head != SNAPSHOT_MAGIC:
                raise CorruptSnapshot("snapshot data does not start with the kv magic")
        unpacker.feed(chunk)
        try:
            for item in unpacker:
                if ended:
                    raise CorruptSnapshot("bytes after the end of the kv snapshot data")
                if item is None:
                    ended = True
                    continue
                yield _check_item(item)
        except (ValueError, msgpack.UnpackException) as e:
            raise CorruptSnapshot(f"malformed kv snapshot data: {e}") from e
    if head != SNAPSHOT_MAGIC:
        raise CorruptSnapshot("snapshot data does not start with the kv magic")
    if not ended:
        raise CorruptSnapshot("kv snapshot data is truncated (no end marker)")


def _check_item(item: Any) -> tuple[int, bytes, bytes]:
    if (
        isinstance(item, list)
        and len(item) == 3
        and isinstance(item[0], int)
        and 0 <= item[0] <= SLOT_MAX
        and isinstance(item[1], bytes)
        and isinstance(item[2], bytes)
    ):
        return item[0], item[1], item[2]
    raise CorruptSnapshot(f"malformed kv snapshot item: {item!r:.80}")
