"""Calls to group leaders for the migration executor: find the leader, retry, give a verdict.

Contract:
- ``LeaderCalls`` sends one ``Migration`` RPC to the leader of a group (0: the meta group),
  following not-leader hints, trying the group's other replicas when a node is down, and
  retrying an outcome-unknown step (every step is idempotent) until ``step_deadline``
  seconds have passed; then it raises ``OutcomeUnknown``.
- A definite "no" from the state machine (ok=False, not unknown) raises ``StepRefused`` with
  the group's reason: the step cannot succeed by retrying.
- Where a group's replicas are comes from the layout (``meta_state``, read linearizably
  from the meta leader), refreshed when a call for a group runs out of known addresses.
- Thread-safe: an executor runs several migrations at once on one ``LeaderCalls``.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import grpc

from kvcluster.errors import InvalidArgument, KvClusterError, OutcomeUnknown
from kvcluster.meta import META_GROUP, MetaState
from kvcluster.v1 import admin_pb2, admin_pb2_grpc

__all__ = ["LeaderCalls", "Proposed", "StepRefused"]

_MAX_COMMANDS = 500  # per Propose RPC


class Proposed(NamedTuple):
    """The outcomes of proposed commands, in order (``ProposeOutcome`` messages), and for
    the meta group the epoch after them."""

    outcomes: list[Any]
    epoch: int


class StepRefused(KvClusterError):
    """A group answered a migration step with a definite no (the reason is the message)."""


class LeaderCalls:
    def __init__(
        self,
        seeds: list[str],
        *,
        address_map: Mapping[str, str] | None = None,
        rpc_timeout: float = 5.0,
        step_deadline: float = 60.0,
    ) -> None:
        if not seeds:
            raise InvalidArgument("no seed addresses")
        self._seeds = list(seeds)
        self._dial = dict(address_map or {})
        self._rpc_timeout = rpc_timeout
        self._step_deadline = step_deadline
        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}
        self._leaders: dict[int, str] = {}
        self._meta: MetaState | None = None
        self._rng = random.Random()

    def close(self) -> None:
        with self._lock:
            for ch in self._channels.values():
                ch.close()
            self._channels.clear()

    def __enter__(self) -> LeaderCalls:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the calls -----------------------------------------------------------------------
    def meta_state(self) -> MetaState:
        """The layout, read linearizably on the meta leader."""
        r = self._call(META_GROUP, "MetaState", admin_pb2.MetaStateRequest())
        state = MetaState.decode(r.state)
        with self._lock:
            self._meta = state
        return state

    def propose(self, group: int, commands: list[bytes]) -> Proposed:
        """Append ``commands`` to ``group``'s log in one batch (or a few, if many); their
        outcomes once all are applied. Raises ``StepRefused`` if any command was refused."""
        out: list[Any] = []
        epoch = 0
        for i in range(0, len(commands), _MAX_COMMANDS):
            part = commands[i : i + _MAX_COMMANDS]
            r = self._call(
                group, "Propose", admin_pb2.ProposeRequest(group_id=group, commands=part)
            )
            if r.error:
                raise StepRefused(f"group {group}: {r.error}")
            refused = [x.error for x in r.results if not x.ok]
            if refused:
                raise StepRefused(f"group {group}: {refused[0]} (and {len(refused) - 1} more)")
            out.extend(r.results)
            epoch = max(epoch, r.epoch)
        return Proposed(out, epoch)

    def scan(
        self,
        group: int,
        slots: list[int],
        kind: int,
        *,
        start_slot: int = 0,
        start_after: bytes | None = None,
        limit: int = 0,
    ) -> Any:
        """One page of a multi-slot scan on ``group``'s leader (see the ScanSlots RPC)."""
        req = admin_pb2.ScanSlotsRequest(
            group_id=group,
            slots=slots,
            kind=kind,  # type: ignore[arg-type]
            start_slot=start_slot,
            start_after=start_after or b"",
            has_start_after=start_after is not None,
            limit=limit,
        )
        return self._call(group, "ScanSlots", req)

    # -- plumbing ------------------------------------------------------------------------
    def _channel(self, addr: str) -> grpc.Channel:
        with self._lock:
            ch = self._channels.get(addr)
            if ch is None:
                ch = grpc.insecure_channel(self._dial.get(addr, addr))
                self._channels[addr] = ch
            return ch

    def _addresses(self, group: int) -> list[str]:
        with self._lock:
            meta = self._meta
            leader = self._leaders.get(group)
        if meta is None or not meta.nodes:
            addrs = list(self._seeds)
        elif group == META_GROUP:
            addrs = [meta.nodes[n] for n in sorted(meta.nodes)]
        else:
            addrs = [meta.nodes[n] for n in meta.groups.get(group, ()) if n in meta.nodes]
        if leader is not None:
            # A leader hint names the address the node advertises, which may be none of the
            # seeds (a client dialling published ports through an address map): try it
            # first all the same.
            if leader in addrs:
                addrs.remove(leader)
            addrs.insert(0, leader)
        return addrs

    def _call(self, group: int, method: str, request: Any) -> Any:
        deadline = time.monotonic() + self._step_deadline
        last = "no attempt"
        backoff = 0.02
        refreshed = False
        while time.monotonic() < deadline:
            addrs = self._addresses(group)
            hinted: str | None = None
            for addr in addrs:
                stub: Any = admin_pb2_grpc.MigrationStub(self._channel(addr))
                try:
                    r = getattr(stub, method)(request, timeout=self._rpc_timeout)
                except grpc.RpcError as e:
                    last = f"{addr}: {e.code().name}"
                    continue
                if r.not_leader:
                    last = f"{addr}: not the leader of group {group}"
                    if r.leader_address and r.leader_address != addr:
                        hinted = r.leader_address
                        break
                    continue
                if getattr(r, "unknown", False):
                    last = f"{addr}: {r.error}"
                    with self._lock:
                        self._leaders[group] = addr
                    break  # the same leader, after a pause
                if r.error and r.error.startswith("unavailable"):
                    last = f"{addr}: {r.error}"
                    break
                if r.error and method != "Propose":
                    raise StepRefused(f"group {group}: {r.error}")
                with self._lock:
                    self._leaders[group] = addr
                return r
            if hinted is not None:
                with self._lock:
                    self._leaders[group] = hinted
                continue
            if not refreshed and group != META_GROUP:
                refreshed = True
                with contextlib.suppress(KvClusterError):
                    self.meta_state()
            time.sleep(backoff * (1 + self._rng.random()))
            backoff = min(backoff * 2, 0.5)
        raise OutcomeUnknown(
            f"group {group} {method}: no answer in {self._step_deadline}s ({last})"
        )
