"""The client's side of routing: where to send a request, and what to do with a redirect.

Contract:
- Pure decisions, shared by the sync and the asyncio client. Only the short loop that sends,
  waits and sleeps is written twice (STYLE.md rule 7)::

      attempt, target, asking, avoid, maybe_applied = 0, None, False, None, False
      while True:
          addr = target or choose_target(slot, cache.slot_map, moved=cache.moved, avoid=avoid)
          attempt += 1
          reply = send(addr, request, asking=asking)  # an Unreachable on timeout/lost link
          if reply is a success:
              return reply
          maybe_applied |= isinstance(reply, Unreachable) and reply.maybe_sent
          action = next_action(reply, attempt=attempt, budget=budget,
                               map_epoch=cache.slot_map.epoch)
          if isinstance(action, GiveUp):
              raise give_up_error(action, maybe_applied=maybe_applied)
          apply action.remember_slot / remember_leader / refresh_map to the cache
          sleep(action.backoff_ticks)
          target, asking, avoid = action.target, action.asking, action.avoid

- Every retry is counted against a ``RetryBudget``, and the loop always ends in a typed outcome
  (STYLE.md rule 8). ``next_action`` returns ``GiveUp`` once ``attempt`` reaches
  ``budget.max_attempts``, whatever the reply.
- Backoff is measured in ticks of the caller's clock, with no jitter here. A caller that wants
  jitter adds it with its own seeded ``random.Random``. Redirects that point somewhere new
  (MOVED, ASK, a named leader) retry at once. Waiting for something to change (TRYAGAIN,
  CLUSTERDOWN, no leader, unreachable, a stale MOVED) backs off exponentially.
- ``next_action`` does not track whether the request may already have been applied. That
  history lives in the loop: once an ``Unreachable(maybe_sent=True)`` has been seen, a later
  ``GiveUp`` means "may have happened", not "did not happen" (DESIGN.md, Reads and writes).
  ``give_up_error`` turns a ``GiveUp`` into the matching ``kvcluster.errors`` exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kvcluster import errors
from kvcluster.errors import InvalidArgument, KvClusterError
from kvcluster.sharding._validate import require_int
from kvcluster.sharding.routing import Ask, ClusterDown, Moved, NotLeaderRedirect, TryAgain
from kvcluster.sharding.slot_map import SlotMap

__all__ = [
    "GiveUp",
    "Reply",
    "Retry",
    "RetryBudget",
    "Unreachable",
    "choose_target",
    "give_up_error",
    "next_action",
    "reply_error",
]


@dataclass(frozen=True, slots=True)
class Unreachable:
    """No answer from ``address``. ``maybe_sent``: the request may have reached the node (a
    timeout or a connection lost after sending), so it may have been applied."""

    address: str
    maybe_sent: bool


Reply = Moved | Ask | TryAgain | ClusterDown | NotLeaderRedirect | Unreachable
"""Every outcome of one attempt other than success."""


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """How hard a client tries. At most ``max_attempts`` sends per request (redis-py's
    cluster TTL is 16). The n-th backoff waits ``min(max_backoff_ticks,
    base_backoff_ticks * 2 ** (n - 1))`` ticks."""

    max_attempts: int = 16
    base_backoff_ticks: int = 1
    max_backoff_ticks: int = 64

    def __post_init__(self) -> None:
        require_int(self.max_attempts, "max_attempts", 1, 1 << 20)
        require_int(self.base_backoff_ticks, "base_backoff_ticks", 0, 1 << 30)
        require_int(self.max_backoff_ticks, "max_backoff_ticks", self.base_backoff_ticks, 1 << 30)

    def backoff(self, attempt: int) -> int:
        """Ticks to wait before retrying after the ``attempt``-th send (1-based)."""
        exponent = min(max(attempt - 1, 0), 30)
        return min(self.max_backoff_ticks, self.base_backoff_ticks << exponent)


@dataclass(frozen=True, slots=True)
class Retry:
    """Send the request again.

    ``target``: the address to send to. ``None`` means route by the cache
    (``choose_target``).
    ``asking``: send ASKING first (after ``Ask``).
    ``refresh_map``: fetch a new slot map from the meta group. The retry itself does not wait
    for it.
    ``backoff_ticks``: how long to wait before sending.
    ``remember_slot``: cache ``slot → target`` until the next map refresh (after ``Moved``).
    ``remember_leader``: record ``target`` as the leader hint of the slot's group.
    ``avoid``: an address that just failed; route around it if the group has another replica.
    """

    target: str | None
    asking: bool = False
    refresh_map: bool = False
    backoff_ticks: int = 0
    remember_slot: bool = False
    remember_leader: bool = False
    avoid: str | None = None


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Stop. ``attempts`` sends were made, and ``last`` was the final reply."""

    reason: str
    attempts: int
    last: Reply


def next_action(
    reply: Reply, *, attempt: int, budget: RetryBudget, map_epoch: int
) -> Retry | GiveUp:
    """What to do after the ``attempt``-th send (1-based) got ``reply``, given a cached map
    at ``map_epoch``.

    - ``Moved`` with an epoch at least the cache's: retry at once at its address, and remember
      the slot there. Ask for a map refresh only when the epoch is *newer* than the cache's;
      an equal epoch means the cache already holds that decision.
    - ``Moved`` with an *older* epoch: the node is behind this client. Following it could
      bounce between two nodes, so back off and retry by the cache. The node catches up.
    - ``Ask``: retry at once at its address with ASKING. Change nothing in the cache.
    - ``TryAgain``: back off, then retry by the cache (normally the same node).
    - ``ClusterDown``: back off, refresh the map, and retry by the cache.
    - ``NotLeaderRedirect`` naming a leader: retry there at once, and remember it as the
      group's leader. Naming none (an election is under way): back off and refresh the map.
    - ``Unreachable``: back off, refresh the map, and retry by the cache, avoiding that address.
    """
    require_int(attempt, "attempt", 1, 1 << 30)
    if attempt >= budget.max_attempts:
        return GiveUp(f"retry budget of {budget.max_attempts} attempts exhausted", attempt, reply)
    wait = budget.backoff(attempt)
    match reply:
        case Moved(epoch=epoch) if epoch < map_epoch:
            return Retry(None, backoff_ticks=wait)
        case Moved(address=address, epoch=epoch):
            return Retry(address, refresh_map=epoch > map_epoch, remember_slot=True)
        case Ask(address=address):
            return Retry(address, asking=True)
        case TryAgain():
            return Retry(None, backoff_ticks=wait)
        case ClusterDown():
            return Retry(None, refresh_map=True, backoff_ticks=wait)
        case NotLeaderRedirect(address=None):
            return Retry(None, refresh_map=True, backoff_ticks=wait)
        case NotLeaderRedirect(address=leader):
            return Retry(leader, remember_leader=True)
        case Unreachable(address=address):
            return Retry(None, refresh_map=True, backoff_ticks=wait, avoid=address)
    raise InvalidArgument(f"not a reply: {reply!r}")


def choose_target(
    slot: int,
    slot_map: SlotMap,
    *,
    moved: Mapping[int, str] | None = None,
    avoid: str | None = None,
) -> str | None:
    """The address to send a request on ``slot`` to, or ``None`` if the cache cannot say (the
    slot is unowned, or its group has no address). In that case, refresh the map.

    The order is: the address a ``Moved`` taught for this slot (``moved``, cleared on each
    map refresh), then the owning group's leader hint, then its replicas in order. ``avoid``
    is skipped unless it is the only choice left.
    """
    if moved is not None:
        addr = moved.get(slot)
        if addr is not None and addr != avoid:
            return addr
    owner = slot_map.owner(slot)
    if owner is None:
        return None
    info = slot_map.group(owner)
    if info is None:
        return None
    if info.leader is not None and info.leader != avoid:
        return info.leader
    for addr in info.replicas:
        if addr != avoid:
            return addr
    return info.address


def reply_error(reply: Reply) -> KvClusterError:
    """The ``kvcluster.errors`` exception that stands for ``reply``. A client raises it when it
    surfaces a reply instead of following it, and uses it as ``last_error`` when it gives up.

    ``NotLeaderRedirect`` maps to ``LeaderRedirect`` with ``leader_id`` 0, because routing
    knows only the leader's address. ``Unreachable`` maps to ``OutcomeUnknown`` if the request
    may have been sent, and to ``ServiceUnavailable`` (it did not happen) if it was not."""
    match reply:
        case Moved(slot=slot, address=address, epoch=epoch):
            return errors.Moved(slot, address, epoch)
        case Ask(slot=slot, address=address):
            return errors.Ask(slot, address)
        case TryAgain(slot=slot):
            return errors.TryAgain(slot)
        case ClusterDown(reason=reason):
            return errors.ClusterDown(reason)
        case NotLeaderRedirect(address=address):
            return errors.LeaderRedirect(0, address or "")
        case Unreachable(address=address, maybe_sent=True):
            return errors.OutcomeUnknown(f"no answer from {address}; it may have been applied")
        case Unreachable(address=address):
            return errors.ServiceUnavailable(f"{address} is unreachable; nothing was sent")
    raise InvalidArgument(f"not a reply: {reply!r}")


def give_up_error(give_up: GiveUp, *, maybe_applied: bool) -> KvClusterError:
    """The error a client raises when ``next_action`` gives up.

    If any attempt may have been applied (the loop saw ``Unreachable(maybe_sent=True)``), the
    result is ``OutcomeUnknown``: the request may have happened. Otherwise it is
    ``RetryBudgetExhausted``: the request did not happen, and ``last_error`` gives the reason."""
    if maybe_applied:
        return errors.OutcomeUnknown(
            f"gave up after {give_up.attempts} attempts; an earlier attempt may have been applied"
        )
    return errors.RetryBudgetExhausted(give_up.attempts, reply_error(give_up.last))
