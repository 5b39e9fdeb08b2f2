"""Client-side encoding: Python arguments to ``kv_pb2.Request`` and ``Response`` to values.

Contract:
- Pure functions shared by the sync and the asyncio client; no I/O.
- Bad arguments (wrong types, negative expiries, both NX and XX) raise ``InvalidArgument``
  here, before anything is sent.
- ``classify`` turns one response into either a final outcome (a value, or a typed error such
  as ``WrongType``) or a ``sharding.retry.Reply`` that the retry loop acts on.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Any

from kvcluster import errors
from kvcluster.client._routing import RouteCache
from kvcluster.sharding.retry import (
    GiveUp,
    Reply,
    Retry,
    RetryBudget,
    Unreachable,
    give_up_error,
    next_action,
)
from kvcluster.sharding.routing import Ask, ClusterDown, Moved, NotLeaderRedirect, TryAgain
from kvcluster.v1 import kv_pb2

__all__ = [
    "NODE_TIMEOUT",
    "Command",
    "Outcome",
    "classify",
    "encode_key",
    "encode_value",
    "to_reply",
]

Key = bytes | str
Value = bytes | str | int | float

WRITE_OPS = frozenset(
    {kv_pb2.SET, kv_pb2.DELETE, kv_pb2.INCRBY, kv_pb2.EXPIRE, kv_pb2.CAS, kv_pb2.PERSIST}
)


def encode_key(key: object) -> bytes:
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    raise errors.InvalidArgument(f"key must be bytes or str, not {type(key).__name__}")


def encode_value(value: object) -> bytes:
    """Like redis-py: bytes as is, str as UTF-8, int and float as their decimal text."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        raise errors.InvalidArgument("value must be bytes, str, int or float, not bool")
    if isinstance(value, int | float):
        return repr(value).encode()
    raise errors.InvalidArgument(
        f"value must be bytes, str, int or float, not {type(value).__name__}"
    )


@dataclass(slots=True)
class Command:
    """One request and how to turn its successful response into a Python value."""

    request: kv_pb2.Request
    decode: Callable[[kv_pb2.Response], Any]

    @property
    def key(self) -> bytes:
        return bytes(self.request.key)

    @property
    def is_write(self) -> bool:
        return self.request.op in WRITE_OPS


def _value_or_none(r: kv_pb2.Response) -> bytes | None:
    return None if r.status == kv_pb2.NOT_FOUND else bytes(r.value)


def _ok(r: kv_pb2.Response) -> bool:
    return r.status == kv_pb2.OK


def _int(r: kv_pb2.Response) -> int:
    return int(r.int_value)


def _int_as_bool(r: kv_pb2.Response) -> bool:
    return r.int_value == 1


def expiry_ms(ex: float | None, px: int | None) -> int:
    if ex is not None and px is not None:
        raise errors.InvalidArgument("give ex or px, not both")
    if ex is not None:
        if isinstance(ex, bool) or not isinstance(ex, int | float) or ex <= 0:
            raise errors.InvalidArgument("ex must be a positive number of seconds")
        return max(1, int(ex * 1000))
    if px is not None:
        if isinstance(px, bool) or not isinstance(px, int) or px <= 0:
            raise errors.InvalidArgument("px must be a positive number of milliseconds")
        return px
    return 0


def get(key: Key, stale: bool = False) -> Command:
    c = kv_pb2.STALE if stale else kv_pb2.LINEARIZABLE
    return Command(
        kv_pb2.Request(op=kv_pb2.GET, key=encode_key(key), consistency=c), _value_or_none
    )


def set_(
    key: Key,
    value: Value,
    ex: float | None = None,
    px: int | None = None,
    nx: bool = False,
    xx: bool = False,
    keepttl: bool = False,
) -> Command:
    if nx and xx:
        raise errors.InvalidArgument("nx and xx are mutually exclusive")
    ttl = expiry_ms(ex, px)
    if keepttl and ttl:
        raise errors.InvalidArgument("keepttl cannot be combined with ex or px")
    flags = (kv_pb2.NX if nx else 0) | (kv_pb2.XX if xx else 0) | (kv_pb2.KEEPTTL if keepttl else 0)
    req = kv_pb2.Request(
        op=kv_pb2.SET, key=encode_key(key), value=encode_value(value), ttl_ms=ttl, flags=flags
    )
    return Command(req, _ok)


def delete(key: Key) -> Command:
    return Command(kv_pb2.Request(op=kv_pb2.DELETE, key=encode_key(key)), _int)


def exists(key: Key, stale: bool = False) -> Command:
    c = kv_pb2.STALE if stale else kv_pb2.LINEARIZABLE
    return Command(kv_pb2.Request(op=kv_pb2.EXISTS, key=encode_key(key), consistency=c), _int)


def incrby(key: Key, amount: int) -> Command:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise errors.InvalidArgument("amount must be an int")
    return Command(kv_pb2.Request(op=kv_pb2.INCRBY, key=encode_key(key), delta=amount), _int)


def pexpire(key: Key, ms: int) -> Command:
    if isinstance(ms, bool) or not isinstance(ms, int) or ms <= 0:
        raise errors.InvalidArgument("expiry must be a positive number of milliseconds")
    req = kv_pb2.Request(op=kv_pb2.EXPIRE, key=encode_key(key), ttl_ms=ms)
    return Command(req, _int_as_bool)


def pttl(key: Key) -> Command:
    return Command(kv_pb2.Request(op=kv_pb2.TTL, key=encode_key(key)), _int)


def persist(key: Key) -> Command:
    return Command(kv_pb2.Request(op=kv_pb2.PERSIST, key=encode_key(key)), _int_as_bool)


def cas(key: Key, expected: Value | None, new: Value) -> Command:
    req = kv_pb2.Request(op=kv_pb2.CAS, key=encode_key(key), value=encode_value(new))
    if expected is not None:
        req.expected = encode_value(expected)
        req.has_expected = True
    return Command(req, _ok)


class NodeTimeout:
    """The node gave up waiting for the outcome (it may or may not have happened)."""


NODE_TIMEOUT = NodeTimeout()

Outcome = errors.KvClusterError | Reply | NodeTimeout | None
"""None: success (decode the response); an error: final; a Reply or NODE_TIMEOUT: retry."""


def classify(resp: kv_pb2.Response) -> Outcome:
    s = resp.status
    if s in (kv_pb2.OK, kv_pb2.NOT_FOUND, kv_pb2.NOT_APPLIED):
        return None
    if s == kv_pb2.NOT_LEADER:
        return NotLeaderRedirect(resp.address or None)
    if s == kv_pb2.MOVED:
        return Moved(resp.slot, resp.address, resp.epoch)
    if s == kv_pb2.ASK:
        return Ask(resp.slot, resp.address)
    if s == kv_pb2.TRYAGAIN:
        return TryAgain(resp.slot)
    if s == kv_pb2.CLUSTERDOWN:
        return ClusterDown(resp.error or "cluster down")
    if s == kv_pb2.TIMEOUT:
        return NODE_TIMEOUT
    if s == kv_pb2.INVALID:
        return errors.InvalidArgument(resp.error)
    if s == kv_pb2.WRONGTYPE:
        return errors.WrongType(resp.error)
    if s == kv_pb2.UNAVAILABLE:
        return errors.ServiceUnavailable(resp.error)
    return errors.KvClusterError(f"{kv_pb2.Status.Name(s)}: {resp.error}")


def to_reply(addr: str, outcome: kv_pb2.Response | Unreachable) -> Reply | None:
    """One attempt's outcome for the retry loop: None on success, the Reply to act on, or a
    raised final error (InvalidArgument, WrongType, ...)."""
    if isinstance(outcome, Unreachable):
        return outcome
    o = classify(outcome)
    if isinstance(o, NodeTimeout):
        return Unreachable(addr, maybe_sent=True)
    if isinstance(o, errors.KvClusterError):
        raise o
    return o


class Attempts:
    """The bookkeeping of one command's retry loop, shared by both clients (only the send and
    the wait are written twice): attempt count, where to send next, whether an earlier
    attempt may have been applied, and the cache side of each decision."""

    def __init__(
        self,
        cmd: Command,
        cache: RouteCache,
        budget: RetryBudget,
        lock: AbstractContextManager[object] | None = None,
    ) -> None:
        self.cmd = cmd
        self.slot = cache.slot(cmd.key)
        self._cache = cache
        self._budget = budget
        self._lock = lock or nullcontext()
        self._attempt = 0
        self._target: str | None = None
        self._avoid: str | None = None
        self._maybe_sent = False
        self._previous: str | None = None  # the address of the attempt before this one

    def next_address(self) -> str:
        return self._target or self._cache.target(self.slot, self._avoid)

    def record(self, addr: str, outcome: kv_pb2.Response | Unreachable) -> Retry | None:
        """None: the attempt succeeded (decode ``outcome``). A ``Retry``: refresh the map and
        back off as it says, then send again. Raises the final error, as ``OutcomeUnknown``
        when an earlier attempt of a write may have been applied."""
        self._attempt += 1
        maybe_applied = self._maybe_sent and self.cmd.is_write
        try:
            reply = to_reply(addr, outcome)
        except (errors.ServiceUnavailable, errors.RetryBudgetExhausted) as e:
            if maybe_applied:  # this attempt did not happen; an earlier one may have
                raise errors.OutcomeUnknown(f"an earlier attempt may have been applied: {e}") from e
            raise
        if reply is None:
            return None
        self._maybe_sent |= isinstance(reply, Unreachable) and reply.maybe_sent
        action = next_action(
            reply,
            attempt=self._attempt,
            budget=self._budget,
            map_epoch=self._cache.slot_map.epoch,
        )
        if isinstance(action, GiveUp):
            raise give_up_error(action, maybe_applied=self._maybe_sent and self.cmd.is_write)
        if action.target is not None and action.target == self._previous and addr != action.target:
            # Sent back where we just were (A -> B -> A): the two nodes disagree, usually for
            # a moment while a new layout reaches them both (a slot just changed owners).
            # Following at once would spend the budget in milliseconds: back off first.
            action = replace(action, backoff_ticks=self._budget.backoff(self._attempt))
        if (
            isinstance(reply, NotLeaderRedirect)
            and action.target is not None
            and self.cmd.request.asking
        ):
            # An ASK names a group; its replica that is not the leader named the leader.
            action = replace(action, asking=True)
        self._previous = addr
        with self._lock:
            self._cache.remember(self.slot, action)
        self.cmd.request.asking = action.asking
        self._target, self._avoid = action.target, action.avoid
        return action
