"""What the client remembers about the cluster, and its sessions for exactly-once writes.

Contract:
- ``RouteCache`` holds the slot map, the slots a MOVED taught since the last refresh, and
  applies the cache side of a ``sharding.retry.Retry``. Pure; guarded by the caller.
- ``SessionPool`` hands each in-flight write its own session (client id, sequence number).
  The state machine remembers the last answer per session, so a write retried with the same
  (client id, seq) — after a timeout, a lost connection or a failover — is applied once.
  One write in flight per session keeps that rule simple; concurrency uses more sessions.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Sequence

from kvcluster import errors
from kvcluster.sharding import GroupInfo, SlotMap, key_slot
from kvcluster.sharding.retry import Retry, choose_target

__all__ = ["RouteCache", "Session", "SessionPool", "parse_seeds", "seed_map"]


def parse_seeds(seeds: str | Sequence[str]) -> list[str]:
    items = seeds.split(",") if isinstance(seeds, str) else list(seeds)
    out = [s.strip() for s in items if s and s.strip()]
    if not out:
        raise errors.InvalidArgument("give at least one seed address HOST:PORT")
    for s in out:
        host, sep, port = s.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise errors.InvalidArgument(f"seed must be HOST:PORT, got {s!r}")
    return out


def seed_map(seeds: list[str]) -> SlotMap:
    """A placeholder map before the first refresh: every slot "owned" by the seeds (epoch 0,
    older than any real map, so the first MOVED or refresh replaces it)."""
    return SlotMap(epoch=0, ranges=[(0, 16383, 0)], groups=[GroupInfo(0, tuple(seeds))])


def decode_slot_map(data: bytes) -> SlotMap:
    try:
        return SlotMap.from_dict(json.loads(data))
    except (ValueError, TypeError) as e:
        raise errors.KvClusterError(f"malformed slot map from the cluster: {e}") from e


class RouteCache:
    def __init__(self, seeds: list[str]) -> None:
        self.seeds = seeds
        self.slot_map = seed_map(seeds)
        self.moved: dict[int, str] = {}

    def slot(self, key: bytes) -> int:
        return key_slot(key)

    def target(self, slot: int, avoid: str | None = None) -> str:
        addr = choose_target(slot, self.slot_map, moved=self.moved, avoid=avoid)
        return addr or self.seeds[0]

    def remember(self, slot: int, action: Retry) -> None:
        if action.target is None:
            return
        if action.remember_slot:
            self.moved[slot] = action.target
        if action.remember_leader:
            owner = self.slot_map.owner(slot)
            if owner is not None and self.slot_map.group(owner) is not None:
                self.slot_map = self.slot_map.with_leader_hint(owner, action.target)
            else:
                self.moved[slot] = action.target

    def replace(self, new: SlotMap) -> bool:
        """Adopt ``new`` if it is at least as new; returns whether it was adopted."""
        if new.epoch < self.slot_map.epoch:
            return False
        self.slot_map = new
        self.moved.clear()
        return True

    def leaders(self) -> list[str]:
        """The leader address of every group in the map (where requests go first)."""
        out: dict[str, None] = {}
        for g in self.slot_map.groups:
            info = self.slot_map.group(g)
            if info is not None and info.leader:
                out.setdefault(info.leader)
        return list(out)

    def addresses(self) -> list[str]:
        """Every address worth asking for a new map: the leaders, the other replicas, then
        the seeds."""
        seen = dict.fromkeys(self.leaders())
        for g in self.slot_map.groups:
            info = self.slot_map.group(g)
            if info is not None:
                for a in info.replicas:
                    seen.setdefault(a)
        for s in self.seeds:
            seen.setdefault(s)
        return list(seen)


class Session:
    __slots__ = ("client_id", "seq")

    def __init__(self, client_id: int) -> None:
        self.client_id = client_id
        self.seq = 0

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


class SessionPool:
    """Thread-safe pool of sessions; ids are random 63-bit numbers (unique per client)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.SystemRandom()
        self._free: list[Session] = []
        self._lock = threading.Lock()

    def acquire(self) -> Session:
        with self._lock:
            if self._free:
                return self._free.pop()
        return Session(self._rng.getrandbits(63) | 1)

    def release(self, s: Session) -> None:
        with self._lock:
            self._free.append(s)
