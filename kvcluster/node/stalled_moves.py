"""Finish decided slot moves whose executor went away.

Contract:
- A move is decided once the meta group records it FROZEN (``Migration.is_decided``): its
  source sends clients to the target with ASK, and the target serves them only once the
  executor has given it the final pass and Activate. An executor that dies there (``kvctl
  reshard`` killed, its machine lost) would leave the slots unwritable until an operator ran
  ``kvctl reshard --resume`` or ``--abort``; this module removes that wait.
- ``StalledMoves.check(phases, leads_meta, now)`` is called periodically by the node with
  every recorded migration's phase. Only on the node that leads the meta group: a decided,
  unfinished migration whose phase has not changed for ``stall_s`` seconds (as seen by this
  node while leading) is stalled. ``check`` returns the ids to finish, at most once per
  stall (the clock restarts for them).
- ``finish(seeds, ids)`` runs ``Executor.finish_decided`` over the cluster's gRPC API, as
  ``kvctl reshard --resume`` would, but for those migrations only: it never plans, copies,
  freezes or aborts an undecided move (those stay the operator's).
- Two executors on one move are safe (every step is idempotent and copy attempts only go
  up); the slower one may fail a step and say so. A live executor normally leaves FROZEN
  within a second, so the default ``stall_s`` (30 s) lets it be.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from kvcluster.reshard import Executor, LeaderCalls
from kvcluster.sharding import DECIDED, Phase

__all__ = ["StalledMoves", "finish"]

log = logging.getLogger(__name__)


@dataclass
class StalledMoves:
    stall_s: float
    _seen: dict[int, tuple[Phase, float]] = field(default_factory=dict)

    def check(self, phases: Mapping[int, Phase], leads_meta: bool, now: float) -> frozenset[int]:
        if not leads_meta or self.stall_s <= 0:
            self._seen.clear()  # a new meta leader starts its own clock
            return frozenset()
        stalled = set()
        seen: dict[int, tuple[Phase, float]] = {}
        for mid, phase in phases.items():
            if phase not in DECIDED or phase == Phase.DONE:
                continue
            was, since = self._seen.get(mid, (phase, now))
            if was != phase:
                since = now
            if now - since >= self.stall_s:
                stalled.add(mid)
                since = now  # once per stall: the next try waits a whole stall again
            seen[mid] = (phase, since)
        self._seen = seen
        return frozenset(stalled)


def finish(seeds: list[str], ids: frozenset[int], step_deadline: float) -> None:
    """Finish the decided migrations ``ids`` (blocking: run it off the event loop)."""
    log.warning(
        "slot moves %s have made no progress while decided (their executor is gone?): "
        "finishing them",
        sorted(ids),
    )
    try:
        with LeaderCalls(seeds, step_deadline=step_deadline) as calls:
            reports = Executor(calls).finish_decided(ids)
    except Exception as e:  # the next stall tries again
        log.error("finishing slot moves %s failed: %s", sorted(ids), e)
        return
    log.warning("finished %d slot move(s): %s", len(reports), sorted(r.slot for r in reports))
