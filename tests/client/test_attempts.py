"""The client's retry bookkeeping (pure: no server)."""

from __future__ import annotations

from kvcluster.client._protocol import Attempts, set_
from kvcluster.client._routing import RouteCache
from kvcluster.sharding import RetryBudget
from kvcluster.v1 import kv_pb2


def not_leader(address: str) -> kv_pb2.Response:
    return kv_pb2.Response(status=kv_pb2.NOT_LEADER, address=address)


def test_a_redirect_to_a_new_address_is_followed_at_once() -> None:
    a = Attempts(set_("k", "v"), RouteCache(["a:1", "b:1"]), RetryBudget())
    action = a.record("a:1", not_leader("b:1"))
    assert action is not None and action.target == "b:1" and action.backoff_ticks == 0


def test_being_sent_back_where_we_just_were_backs_off() -> None:
    """Two nodes that disagree for a moment (a new layout reaching them one after the other)
    must not burn the retry budget in milliseconds by bouncing the request between them."""
    budget = RetryBudget(max_attempts=16)
    a = Attempts(set_("k", "v"), RouteCache(["a:1", "b:1"]), budget)
    first = a.record("a:1", not_leader("b:1"))
    assert first is not None and first.backoff_ticks == 0
    back = a.record("b:1", not_leader("a:1"))
    assert back is not None and back.target == "a:1" and back.backoff_ticks > 0
    again = a.record("a:1", not_leader("b:1"))
    assert again is not None and again.backoff_ticks >= back.backoff_ticks


def ask(address: str) -> kv_pb2.Response:
    return kv_pb2.Response(status=kv_pb2.ASK, slot=1, address=address)


def test_an_ask_is_followed_with_asking_and_kept_across_the_asked_group_s_leader() -> None:
    """ASK names a group (a frozen source sends the request to its target); a replica of it
    that is not the leader names the leader, and the request must still say ASKING there,
    or that node would route it back to the source."""
    cmd = set_("k", "v")
    a = Attempts(cmd, RouteCache(["a:1", "b:1", "c:1"]), RetryBudget())
    asked = a.record("a:1", ask("b:1"))
    assert asked is not None and asked.target == "b:1" and asked.backoff_ticks == 0
    assert cmd.request.asking
    led = a.record("b:1", not_leader("c:1"))
    assert led is not None and led.target == "c:1" and cmd.request.asking
    # Anything else ends the ASKING: a TRYAGAIN goes back to the cache's route, unasked.
    later = a.record("c:1", kv_pb2.Response(status=kv_pb2.TRYAGAIN, slot=1))
    assert later is not None and later.target is None and not cmd.request.asking


def test_a_not_leader_redirect_without_an_ask_does_not_ask() -> None:
    cmd = set_("k", "v")
    a = Attempts(cmd, RouteCache(["a:1", "b:1"]), RetryBudget())
    a.record("a:1", not_leader("b:1"))
    assert not cmd.request.asking
