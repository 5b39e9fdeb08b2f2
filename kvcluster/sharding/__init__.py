"""kvcluster.sharding: keys to slots, slots to groups, migrations and routing, all pure.

- ``slots``: ``key_slot`` (CRC16/XMODEM mod 16384 with Redis Cluster's hash tags).
- ``groups`` and ``slot_map``: the immutable, epoch-versioned ``SlotMap`` and its ``GroupInfo``.
- ``migration``: the phases of a slot migration and their legal transitions.
- ``rebalance``: which slots to move for ``kvctl reshard`` and ``kvctl rebalance``.
- ``routing``: what a node answers for a slot (serve, MOVED, ASK, TRYAGAIN, ...).
- ``retry``: what a client does with that answer, within a retry budget.

Nothing here does I/O, reads a clock, starts tasks or uses the module-level ``random``.
``tests/sharding/test_purity.py`` enforces this on every module's imports.
"""

from kvcluster.sharding.groups import MAX_GROUP_ID, GroupInfo
from kvcluster.sharding.migration import (
    DECIDED,
    FORWARD,
    TRANSITIONS,
    Migration,
    Phase,
    SlotState,
    abort,
    advance,
    next_phase,
)
from kvcluster.sharding.rebalance import plan_rebalance, plan_reshard
from kvcluster.sharding.retry import (
    GiveUp,
    Reply,
    Retry,
    RetryBudget,
    Unreachable,
    choose_target,
    give_up_error,
    next_action,
    reply_error,
)
from kvcluster.sharding.routing import (
    Ask,
    ClusterDown,
    Decision,
    Moved,
    NotLeaderRedirect,
    NotServed,
    Serve,
    TryAgain,
    route_request,
)
from kvcluster.sharding.slot_map import FORMAT_VERSION, SlotMap, SlotRange
from kvcluster.sharding.slots import SLOT_COUNT, crc16, hash_tag, key_slot

__all__ = [
    "DECIDED",
    "FORMAT_VERSION",
    "FORWARD",
    "MAX_GROUP_ID",
    "SLOT_COUNT",
    "TRANSITIONS",
    "Ask",
    "ClusterDown",
    "Decision",
    "GiveUp",
    "GroupInfo",
    "Migration",
    "Moved",
    "NotLeaderRedirect",
    "NotServed",
    "Phase",
    "Reply",
    "Retry",
    "RetryBudget",
    "Serve",
    "SlotMap",
    "SlotRange",
    "SlotState",
    "TryAgain",
    "Unreachable",
    "abort",
    "advance",
    "choose_target",
    "crc16",
    "give_up_error",
    "hash_tag",
    "key_slot",
    "next_action",
    "next_phase",
    "plan_rebalance",
    "plan_reshard",
    "reply_error",
    "route_request",
]
