"""The meta group: the cluster's nodes, shard groups and slot owners, decided by consensus."""

from kvcluster.meta.state import META_GROUP, MetaState, plan_bootstrap
from kvcluster.meta.state_machine import (
    AbortMove,
    AddGroup,
    AdvanceMove,
    AdvanceMoves,
    Bootstrap,
    ForgetMove,
    MetaResult,
    MetaStateMachine,
    PlanMoves,
    RemoveGroup,
    decode_meta_command,
)

__all__ = [
    "META_GROUP",
    "AbortMove",
    "AddGroup",
    "AdvanceMove",
    "AdvanceMoves",
    "Bootstrap",
    "ForgetMove",
    "MetaResult",
    "MetaState",
    "MetaStateMachine",
    "PlanMoves",
    "RemoveGroup",
    "decode_meta_command",
    "plan_bootstrap",
]
