"""The meta group: the cluster's nodes, shard groups and slot owners, decided by consensus."""

from kvcluster.meta.state import META_GROUP, MetaState, plan_bootstrap
from kvcluster.meta.state_machine import Bootstrap, MetaResult, MetaStateMachine

__all__ = [
    "META_GROUP",
    "Bootstrap",
    "MetaResult",
    "MetaState",
    "MetaStateMachine",
    "plan_bootstrap",
]
