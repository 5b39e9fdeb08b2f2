"""One group's kv data inside one transaction, in the shape the kv state machine works on.

Contract:
- ``GroupKvReadView`` and ``GroupKvView`` implement ``kvcluster.kv.view.KvReadView`` and
  ``KvView`` structurally (storage sits below the state machines and imports nothing of
  theirs): data records ``(slot, key) -> value`` and meta records ``name -> value``.
- Meta records live in the reserved slot ``codec.SM_META_SLOT`` of the group's kv range, so
  snapshots, installs and ``drop_group`` carry them exactly like data.
- A view is valid only while its transaction is open. Writes through a ``GroupKvView`` are
  part of that ``WriteTxn``: they commit or roll back with it, together with
  ``set_applied``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kvcluster.errors import InvalidArgument
from kvcluster.storage import _lmdb, codec

if TYPE_CHECKING:
    from kvcluster.storage.txn import WriteTxn

__all__ = ["GroupKvReadView", "GroupKvView"]


class GroupKvReadView:
    """Reads of one group's data and meta records (a read or a write transaction)."""

    __slots__ = ("_db", "_max_key", "_txn", "group")

    def __init__(self, txn: _lmdb.Txn, db: _lmdb.Database, group: int, max_key: int) -> None:
        self._txn = txn
        self._db = db
        self._max_key = max_key
        self.group = group

    def get(self, slot: int, key: bytes) -> bytes | None:
        return self._txn.get(self._key(slot, key), db=self._db)

    def get_meta(self, name: bytes) -> bytes | None:
        return self._txn.get(self._meta_key(name), db=self._db)

    def scan(self, slot: int, start_after: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` ``(key, value)`` pairs of ``slot`` after ``start_after``, in order."""
        prefix = codec.slot_prefix(self.group, self._check_slot(slot))
        out: list[tuple[bytes, bytes]] = []
        if limit <= 0:
            return out
        cur = self._txn.cursor(db=self._db)
        start = prefix if start_after is None else prefix + start_after
        if not cur.set_range(start):
            return out
        if start_after is not None and cur.key() == start and not cur.next():
            return out
        n = len(prefix)
        for raw, value in cur.iternext():
            if raw[:n] != prefix:
                break
            out.append((raw[n:], value))
            if len(out) >= limit:
                break
        return out

    def _check_slot(self, slot: int) -> int:
        if not 0 <= slot <= codec.DATA_SLOT_MAX:
            raise InvalidArgument(f"slot {slot} out of range 0..{codec.DATA_SLOT_MAX}")
        return slot

    def _key(self, slot: int, key: bytes) -> bytes:
        if not 0 <= slot <= codec.DATA_SLOT_MAX:
            raise InvalidArgument(f"slot {slot} out of range 0..{codec.DATA_SLOT_MAX}")
        if len(key) > self._max_key:
            raise InvalidArgument(f"key of {len(key)} bytes exceeds {self._max_key} bytes")
        return codec.kv_key(self.group, slot, key)

    def _meta_key(self, name: bytes) -> bytes:
        if len(name) > self._max_key:
            raise InvalidArgument(f"meta name of {len(name)} bytes exceeds {self._max_key}")
        return codec.kv_key(self.group, codec.SM_META_SLOT, name)


class GroupKvView(GroupKvReadView):
    """Reads and writes of one group's data and meta records inside a ``WriteTxn``."""

    __slots__ = ("_w",)

    def __init__(self, w: WriteTxn, txn: _lmdb.Txn, db: _lmdb.Database, group: int, max_key: int):
        super().__init__(txn, db, group, max_key)
        self._w = w

    def put(self, slot: int, key: bytes, value: bytes) -> None:
        self._w._put(self._txn, self._key(slot, key), value, self._db)

    def delete(self, slot: int, key: bytes) -> bool:
        return self._w._delete(self._key(slot, key), self._db)

    def put_meta(self, name: bytes, value: bytes) -> None:
        self._w._put(self._txn, self._meta_key(name), value, self._db)

    def delete_meta(self, name: bytes) -> bool:
        return self._w._delete(self._meta_key(name), self._db)

    def delete_slot(self, slot: int) -> int:
        """Delete every key of ``slot``; how many there were."""
        return self._w._delete_prefix(
            self._db, codec.slot_prefix(self.group, self._check_slot(slot))
        )
