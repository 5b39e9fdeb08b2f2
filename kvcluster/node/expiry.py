"""Active expiry: the leader of each shard group deletes, through the group's log, the keys it
finds expired.

Contract:
- An expired key is already absent for every read and write (they check its expiry); this
  gives its space back. Without it a key that is never touched again stays stored.
- ``ExpiryScan.next_pass`` reads at most ``limit`` records of a group, resuming after the
  last record its previous pass read and starting over at the group's end, so every key is
  looked at once per ``records / limit`` passes whatever the group's size, and one pass costs
  a bounded read. It reads only the slots' keys (slots 0..16383), never the state machine's
  own records stored after them (the session index, sessions, the clock).
- The expired keys a pass finds (at most ``MAX_SWEEP_KEYS``) become one ``ExpireSweep``
  stamped with the leader's clock. Applying it deletes only the keys still expired at the
  state machine's clock and writable in that group (not frozen or moving away), so a key
  written again since the scan stays, and every replica deletes the same keys.
- Pure apart from the read transaction it is given; the node proposes the command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kvcluster.kv import MAX_SWEEP_KEYS, ExpireSweep
from kvcluster.kv.values import is_expired
from kvcluster.sharding import SLOT_COUNT

if TYPE_CHECKING:
    from kvcluster.storage import ReadTxn

__all__ = ["SCAN_PER_PASS", "ExpiryScan"]

SCAN_PER_PASS = 1000
"""Records one pass reads from a group (about 1 ms of reading per pass)."""


class ExpiryScan:
    """Where each group's scan stands, and one pass of it."""

    def __init__(self, limit: int = SCAN_PER_PASS) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        self._after: dict[int, tuple[int, bytes]] = {}

    def next_pass(self, txn: ReadTxn, group: int, now_ms: int) -> ExpireSweep | None:
        """Read the group's next records in ``txn``; the sweep of those expired at
        ``now_ms``, or None if none is."""
        keys: list[bytes] = []
        records = txn.iter_group_kv(group, self._after.pop(group, None))
        for read, (slot, key, value) in enumerate(records, 1):
            if slot >= SLOT_COUNT:
                break  # the keys are done (the state machine's own records follow)
            if is_expired(value, now_ms):
                keys.append(key)
            if read == self.limit or len(keys) == MAX_SWEEP_KEYS:
                self._after[group] = (slot, key)
                break
        return ExpireSweep(now_ms, tuple(keys)) if keys else None

    def keep(self, groups: set[int]) -> None:
        """Forget every group not in ``groups`` (no longer led here, or gone)."""
        for group in set(self._after) - groups:
            del self._after[group]
