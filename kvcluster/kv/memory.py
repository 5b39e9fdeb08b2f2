"""An in-memory ``KvView``: one group's data and meta in two dicts.

Contract:
- Implements ``KvView`` (and so ``KvReadView``) exactly as the storage layer must: ``put``
  overwrites, ``delete``/``delete_meta`` say whether something was there.
- No transactions: a test that wants to roll back keeps a ``copy()``.
- ``dump()`` is a canonical, sorted picture of everything stored, for comparing replicas.
- For tests and simulations; pure (stdlib only).
"""

from __future__ import annotations

__all__ = ["MemoryKvView"]


class MemoryKvView:
    __slots__ = ("data", "meta")

    def __init__(self) -> None:
        self.data: dict[tuple[int, bytes], bytes] = {}
        self.meta: dict[bytes, bytes] = {}

    def get(self, slot: int, key: bytes) -> bytes | None:
        return self.data.get((slot, key))

    def put(self, slot: int, key: bytes, value: bytes) -> None:
        self.data[(slot, key)] = value

    def delete(self, slot: int, key: bytes) -> bool:
        return self.data.pop((slot, key), None) is not None

    def scan(self, slot: int, start_after: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        keys = sorted(
            k for s, k in self.data if s == slot and (start_after is None or k > start_after)
        )
        return [(k, self.data[(slot, k)]) for k in keys[:limit]]

    def delete_slot(self, slot: int) -> int:
        doomed = [sk for sk in self.data if sk[0] == slot]
        for sk in doomed:
            del self.data[sk]
        return len(doomed)

    def get_meta(self, name: bytes) -> bytes | None:
        return self.meta.get(name)

    def put_meta(self, name: bytes, value: bytes) -> None:
        self.meta[name] = value

    def delete_meta(self, name: bytes) -> bool:
        return self.meta.pop(name, None) is not None

    def copy(self) -> MemoryKvView:
        c = MemoryKvView()
        c.data = dict(self.data)
        c.meta = dict(self.meta)
        return c

    def dump(self) -> tuple[list[tuple[tuple[int, bytes], bytes]], list[tuple[bytes, bytes]]]:
        """Every data and meta record, sorted: equal dumps mean identical views."""
        return sorted(self.data.items()), sorted(self.meta.items())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MemoryKvView):
            return NotImplemented
        return self.data == other.data and self.meta == other.meta

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"MemoryKvView({len(self.data)} keys, {len(self.meta)} meta records)"
