"""The storage the kv state machine works on: one group's data and meta records.

Contract:
- ``KvView`` is one group's data inside one write transaction; ``KvReadView`` is the part a
  read needs. The storage layer implements both over LMDB (data under a slot prefix, so a
  slot can be scanned and moved as a range); ``kvcluster.kv.memory.MemoryKvView`` is the
  in-memory implementation for tests.
- Data records are ``(slot, key) -> stored value`` (see ``values``); meta records are
  ``name -> bytes`` for the state machine's own bookkeeping (its clock and client sessions;
  names start with ``b"kv/"``). *All* of the state machine's state is in these records, so a
  snapshot or a restart that keeps them keeps everything; a snapshot must copy both kinds.
- The applied index is not the state machine's business: the storage records it in the
  same transaction in which the entry is applied.
- ``scan`` pages through one slot in key order (keys after ``start_after``, at most
  ``limit``); ``delete_slot`` removes every key of a slot (a slot migrated away). Slots
  ``16384..32767`` are shadow slots the state machine uses for its own bookkeeping (dirty
  marks of a migrating slot).
- Keys the state machine passes are at most ``commands.MAX_KEY_BYTES`` long.
- A record that is not in the form the state machine writes raises ``CorruptKvState``
  (storage corruption or a foreign writer); the caller aborts the transaction.
"""

from __future__ import annotations

from typing import Protocol

from kvcluster.errors import KvClusterError

__all__ = ["CorruptKvState", "KvReadView", "KvView"]


class CorruptKvState(KvClusterError):
    """A stored value or meta record is not in the form the kv state machine writes."""


class KvReadView(Protocol):
    """Read access to one group's data (a read transaction, or a write one)."""

    def get(self, slot: int, key: bytes) -> bytes | None: ...
    def get_meta(self, name: bytes) -> bytes | None: ...
    def scan(
        self, slot: int, start_after: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]: ...


class KvView(KvReadView, Protocol):
    """One group's data inside one write transaction."""

    def put(self, slot: int, key: bytes, value: bytes) -> None: ...
    def delete(self, slot: int, key: bytes) -> bool: ...
    def put_meta(self, name: bytes, value: bytes) -> None: ...
    def delete_meta(self, name: bytes) -> bool: ...
    def delete_slot(self, slot: int) -> int: ...
