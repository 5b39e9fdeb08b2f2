"""Online slot migration, the operator's side: ``Executor`` drives the migrations the meta
group records (``kvctl reshard`` / ``rebalance``), ``LeaderCalls`` reaches group leaders.
The plans are ``kvcluster.sharding.rebalance``; the groups' side is ``kvcluster.kv.slot_moves``."""

from kvcluster.reshard.executor import Executor, SlotReport
from kvcluster.reshard.rpc import LeaderCalls, StepRefused

__all__ = ["Executor", "LeaderCalls", "SlotReport", "StepRefused"]
