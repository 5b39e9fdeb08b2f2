"""The reshard nemesis's hands: online slot moves through kvcluster's own migration executor.

What lives here: `ClusterResharder`, the `nemesis.Resharder` of a run (both backends): the
layout from the meta group (``kvcluster.reshard.LeaderCalls.meta_state``), and moves recorded
and driven by ``kvcluster.reshard.Executor`` — the same code as ``kvctl reshard``.

Contract:
- Addresses: the address map a run's clients use (compose: the names the nodes advertise ->
  the ports published on the host; local: none, the nodes' addresses are reachable from the
  root namespace), and seeds *as the nodes advertise them* (`advertised_seeds`: the map's
  keys when there is a map). ``LeaderCalls`` moves a not-leader hint (an advertised address)
  to the front only if it is one of the addresses it knows; before its first layout read
  those are the seeds, so published ports as seeds would never reach the leader when the
  first seed is not it (then every call runs out its step deadline). Every address is mapped
  when dialled.
- Every call retries through faults by itself (``LeaderCalls``: not-leader hints, other
  replicas, outcome-unknown steps retried) for up to `step_deadline` seconds per step, long
  enough to outlast any fault of a run; each attempt gives up after `rpc_timeout` seconds so
  a partitioned or paused node is skipped quickly.
- `reshard` plans the moves in the meta group (all or nothing), then ``Executor.run`` drives
  *every* unfinished migration (so one left by an earlier failure is picked up too) until done
  or until the stop event is set: the executor then stops before any further freeze, and
  slots already frozen finish their cutover. `resume` is ``Executor.run`` without a stop.
  Failures come back in the result (``ReshardResult.error``), never as exceptions; the slots
  already finished are counted either way.
- Thread-safe: the reshard thread and the main thread (finishing after the heal) share one
  ``LeaderCalls``; two executors at once are safe (kvcluster's contract).

What must not: choose what to move or when (`nemesis`), touch nodes or the network (the
backend), or outlive the run (`close`).
"""

from __future__ import annotations

import importlib
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from jepsen_lite.nemesis import Layout, Migrating, ReshardResult

__all__ = ["ClusterResharder", "advertised_seeds"]


def advertised_seeds(seeds: Sequence[str], address_map: Mapping[str, str]) -> list[str]:
    """The seeds as the nodes advertise them: the map's keys (ordered as their targets are in
    `seeds`) when there is an address map, else `seeds` themselves."""
    if not address_map:
        return list(seeds)
    order = {addr: i for i, addr in enumerate(seeds)}
    return sorted(address_map, key=lambda name: (order.get(address_map[name], len(order)), name))


class ClusterResharder:
    """A `nemesis.Resharder` over kvcluster's migration RPCs; see the module docstring."""

    def __init__(
        self,
        seeds: Sequence[str],
        *,
        address_map: Mapping[str, str] | None = None,
        step_deadline: float = 30.0,
        rpc_timeout: float = 2.0,
        batch: int = 16,
        parallel: int = 2,
    ) -> None:
        reshard = importlib.import_module("kvcluster.reshard")
        self._executor_cls: Any = reshard.Executor
        self._phase: Any = importlib.import_module("kvcluster.sharding.migration").Phase
        self.calls: Any = reshard.LeaderCalls(
            list(seeds),
            address_map=dict(address_map or {}),
            rpc_timeout=rpc_timeout,
            step_deadline=step_deadline,
        )
        self.batch, self.parallel = batch, parallel

    def close(self) -> None:
        self.calls.close()

    def layout(self) -> Layout:
        meta = self.calls.meta_state()
        owners = {s: g for first, last, g in meta.owners for s in range(first, last + 1)}
        migrating = frozenset(m.slot for m in meta.migrations)
        return Layout(owners, tuple(sorted(meta.groups)), migrating)

    def migrations(self) -> list[Migrating]:
        return [
            Migrating(m.slot, m.source, m.target, self._phase(m.phase).name)
            for m in self.calls.meta_state().migrations
        ]

    def reshard(self, moves: Sequence[tuple[int, int]], stop: threading.Event) -> ReshardResult:
        return self._drive(list(moves), stop)

    def resume(self) -> ReshardResult:
        return self._drive([], threading.Event())

    def _drive(self, moves: list[tuple[int, int]], stop: threading.Event) -> ReshardResult:
        outcomes: Counter[str] = Counter()
        cutover: list[float] = []

        def on_slot(report: Any) -> None:
            outcomes[str(report.outcome)] += 1
            if report.cutover_ms:
                cutover.append(float(report.cutover_ms))

        executor = self._executor_cls(
            self.calls, batch=self.batch, parallel=self.parallel, stop=stop, on_slot=on_slot
        )
        error: str | None = None
        try:
            if moves:
                executor.plan(moves)
            executor.run()
        except Exception as e:  # OutcomeUnknown after the step deadline, StepRefused, ...
            error = f"{type(e).__name__}: {e}"[:300]
        return ReshardResult(dict(outcomes), round(max(cutover), 1) if cutover else None, error)
