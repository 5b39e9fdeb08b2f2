"""The redis-style command surface, written once and shared by Client, AsyncClient and their
pipelines: each method builds ``Command`` objects and hands them to ``self._dispatch``.

Contract: names and return types follow redis-py where they overlap (``get`` -> bytes | None,
``set`` -> bool, ``delete`` -> int, ``incr`` -> int, ``ttl`` -> int seconds, ``pttl`` -> ms,
``mget`` -> list, ``mset`` -> bool); ``cas`` is kvcluster's own. ``_dispatch`` returns the
decoded value (sync), an awaitable of it (async), or queues it (pipelines) — so the return
annotations here are ``Any`` and the concrete classes document the real types.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from kvcluster import errors
from kvcluster.client import _protocol as p
from kvcluster.client._routing import RouteCache, Session, SessionPool, parse_seeds
from kvcluster.sharding.retry import RetryBudget

__all__ = ["ClientBase", "Commands", "combine_results"]


class Commands:
    _stale: bool = False

    def _dispatch(self, cmds: list[p.Command], combine: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def get(self, key: p.Key, *, stale: bool | None = None) -> Any:
        return self._dispatch([p.get(key, self._stale if stale is None else stale)], _first)

    def set(
        self,
        key: p.Key,
        value: p.Value,
        ex: float | None = None,
        px: int | None = None,
        nx: bool = False,
        xx: bool = False,
        keepttl: bool = False,
    ) -> Any:
        return self._dispatch([p.set_(key, value, ex, px, nx, xx, keepttl)], _first)

    def delete(self, *keys: p.Key) -> Any:
        if not keys:
            raise errors.InvalidArgument("delete needs at least one key")
        return self._dispatch([p.delete(k) for k in keys], sum)

    def exists(self, *keys: p.Key, stale: bool | None = None) -> Any:
        if not keys:
            raise errors.InvalidArgument("exists needs at least one key")
        s = self._stale if stale is None else stale
        return self._dispatch([p.exists(k, s) for k in keys], sum)

    def incrby(self, key: p.Key, amount: int = 1) -> Any:
        return self._dispatch([p.incrby(key, amount)], _first)

    def incr(self, key: p.Key, amount: int = 1) -> Any:
        return self.incrby(key, amount)

    def decr(self, key: p.Key, amount: int = 1) -> Any:
        return self.incrby(key, -amount)

    def expire(self, key: p.Key, seconds: float) -> Any:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
            raise errors.InvalidArgument("seconds must be a positive number")
        return self._dispatch([p.pexpire(key, max(1, int(seconds * 1000)))], _first)

    def pexpire(self, key: p.Key, ms: int) -> Any:
        return self._dispatch([p.pexpire(key, ms)], _first)

    def pttl(self, key: p.Key) -> Any:
        return self._dispatch([p.pttl(key)], _first)

    def ttl(self, key: p.Key) -> Any:
        return self._dispatch([p.pttl(key)], _ttl_seconds)

    def persist(self, key: p.Key) -> Any:
        return self._dispatch([p.persist(key)], _first)

    def cas(self, key: p.Key, expected: p.Value | None, new: p.Value) -> Any:
        """Set ``key`` to ``new`` if its value is ``expected`` (None: if it is absent).
        Returns whether it was set. Atomic: decided by the key's group in its log."""
        return self._dispatch([p.cas(key, expected, new)], _first)

    def mget(self, keys: list[p.Key], *, stale: bool | None = None) -> Any:
        """Values in order (None for absent). Keys in different slots are fetched from their
        groups separately: the result is not one atomic snapshot across groups."""
        s = self._stale if stale is None else stale
        return self._dispatch([p.get(k, s) for k in keys], list)

    def mset(self, mapping: Mapping[p.Key, p.Value]) -> Any:
        """Set every pair. Pairs in different groups are applied separately (not atomic
        across groups, unlike Redis's MSET within one slot)."""
        if not mapping:
            raise errors.InvalidArgument("mset needs at least one pair")
        return self._dispatch([p.set_(k, v) for k, v in mapping.items()], all)


class ClientBase(Commands):
    """What the sync and the async client share: configuration, the route cache, sessions.
    Subclasses add their transport in ``_init_transport`` and the send/wait loop."""

    def __init__(
        self,
        seeds: str | Sequence[str],
        *,
        timeout: float = 5.0,
        budget: RetryBudget | None = None,
        backoff_tick: float = 0.01,
        stale: bool = False,
        address_map: Mapping[str, str] | None = None,
    ) -> None:
        """``seeds``: one or more node addresses (HOST:PORT, a list or comma-separated).
        ``timeout``: seconds per RPC. ``budget``: how many attempts a request gets.
        ``backoff_tick``: seconds per backoff tick. ``stale``: read any replica by default.
        ``address_map`` translates the addresses nodes advertise (in redirects and the slot
        map) into ones this client can dial, e.g. a container's name to a published host
        port — Redis Cluster's NAT problem, solved on the client side."""
        self._cache = RouteCache(parse_seeds(seeds))
        self._dial = dict(address_map or {})
        self._timeout = timeout
        self._budget = budget or RetryBudget()
        self._tick = backoff_tick
        self._stale = stale
        self._sessions = SessionPool()
        self._refreshed = False
        self._init_transport()

    def _init_transport(self) -> None:  # pragma: no cover - every client defines it
        raise NotImplementedError

    @property
    def slot_map_epoch(self) -> int:
        return self._cache.slot_map.epoch

    def _open_sessions(self, cmds: list[p.Command]) -> list[Session]:
        """Give every write its own session (client id, next seq); release them after."""
        sessions = []
        for c in cmds:
            if c.is_write:
                s = self._sessions.acquire()
                sessions.append(s)
                c.request.client_id, c.request.seq = s.client_id, s.next_seq()
        return sessions

    def _close_sessions(self, sessions: list[Session]) -> None:
        for s in sessions:
            self._sessions.release(s)

    def _by_target(self, cmds: list[p.Command]) -> dict[str, list[int]]:
        """The first attempt's plan: command positions grouped by the node to send them to."""
        by_target: dict[str, list[int]] = {}
        for i, c in enumerate(cmds):
            by_target.setdefault(self._cache.target(self._cache.slot(c.key)), []).append(i)
        return by_target


def _first(values: list[Any]) -> Any:
    return values[0]


def _ttl_seconds(values: list[Any]) -> int:
    ms = int(values[0])
    return ms if ms < 0 else math.ceil(ms / 1000)


def combine_results(queued: list[tuple[list[p.Command], Any]], values: list[Any]) -> list[Any]:
    """Fold a pipeline's flat results back into one value per queued call; a call whose
    command failed yields that exception (when the pipeline collects errors)."""
    out: list[Any] = []
    i = 0
    for cmds, combine in queued:
        part = values[i : i + len(cmds)]
        err = next((v for v in part if isinstance(v, BaseException)), None)
        out.append(err if err is not None else combine(part))
        i += len(cmds)
    return out
