"""One replica of one Raft group on this node: its RawNode and what clients wait on.

Contract:
- Owns the ``RawNode`` of the group and the futures of requests waiting on it: proposed
  writes (by log index and term) and linearizable reads (a ReadIndex round, then the applied
  index). Runs only on the node's event loop thread; never does I/O itself.
- A proposed write resolves when its entry is applied: with the state machine's answer if
  the applied entry is ours (same index and term), or with ``ProposalDropped`` if another
  leader's entry took the index (ours can then never commit). A write still pending when
  the caller gives up is reported by the caller as TIMEOUT (outcome unknown), never failed.
- A write held for a slot whose copy is still arriving is proposed right behind the slot's
  Activate, in the same batch (``hold_for_activation``): in the same leader's log, it is
  applied after it.
- Reads in one loop turn share one ReadIndex request (and the core shares one heartbeat
  round among all requests of a turn), so a burst of reads costs one round trip.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random

from kvcluster.errors import NotLeader, ProposalDropped
from kvcluster.kv.result import KvResult
from kvcluster.raft import (
    ConfChange,
    Config,
    ConfState,
    Entry,
    EntryType,
    RawNode,
    Ready,
    StateRole,
)
from kvcluster.raft.storage import Storage

__all__ = ["GroupReplica"]


class GroupReplica:
    def __init__(
        self,
        group_id: int,
        config: Config,
        storage: Storage,
        rng: random.Random,
        conf_state: ConfState,
    ) -> None:
        self.group_id = group_id
        self.raw = RawNode(config, storage, rng)
        self.applied = config.applied
        self.conf_state = conf_state
        self._writes: dict[int, tuple[int, asyncio.Future[KvResult]]] = {}
        self._read_round: asyncio.Future[int] | None = None  # this turn's shared ReadIndex
        self._read_rounds: dict[bytes, asyncio.Future[int]] = {}
        self._apply_waits: list[tuple[int, int, asyncio.Future[None]]] = []  # (index, n, fut)
        self._ctx = itertools.count(1)
        self._wait_seq = itertools.count()
        self._activation_waits: dict[
            int, list[tuple[bytes, asyncio.Future[asyncio.Future[KvResult]]]]
        ] = {}
        self._activations: dict[int, tuple[int, int]] = {}  # slot -> (term, index) proposed
        self._freezes: dict[int, tuple[int, int]] = {}  # the same, for Freeze
        # Slots seen frozen or released here (a hint: the services check the slot's record
        # before answering from it, and forget the slot when it is neither any more).
        self.departed: set[int] = set()

    # -- status ----------------------------------------------------------------------------
    @property
    def is_leader(self) -> bool:
        return self.raw.raft.role == StateRole.LEADER

    @property
    def leader_id(self) -> int:
        return self.raw.raft.leader_id

    # -- requests (event loop thread) --------------------------------------------------------
    def propose(self, datas: list[bytes]) -> list[asyncio.Future[KvResult]]:
        """Append commands to the log; raises NotLeader / ProposalDropped if not accepted."""
        self.raw.propose_many(datas)
        raft = self.raw.raft
        last, term = raft.log.last_index(), raft.term
        loop = asyncio.get_running_loop()
        futs: list[asyncio.Future[KvResult]] = []
        for index in range(last - len(datas) + 1, last + 1):
            fut: asyncio.Future[KvResult] = loop.create_future()
            self._writes[index] = (term, fut)
            futs.append(fut)
        return futs

    def hold_for_activation(
        self, slot: int, data: bytes
    ) -> asyncio.Future[asyncio.Future[KvResult]]:
        """Hold the write ``data`` on ``slot`` (whose copy is still arriving) until this
        replica, as leader, proposes the slot's Activate, and propose it right behind, in
        the same batch (at once if an Activate is pending). The future resolves with the
        write's proposal future. A hint only: the apply-time guards decide. The caller
        cancels it when it stops waiting; raises like ``propose``."""
        fut: asyncio.Future[asyncio.Future[KvResult]] = asyncio.get_running_loop().create_future()
        if self._pending(self._activations, slot):
            (write,) = self.propose([data])
            fut.set_result(write)
        else:
            self._activation_waits.setdefault(slot, []).append((data, fut))
        return fut

    def note_moves(
        self, activations: list[tuple[int, int]], freezes: list[tuple[int, int]]
    ) -> None:
        """Activates and Freezes of these ``(slot, log index)`` were just proposed here."""
        term = self.raw.raft.term
        for slot, index in freezes:
            self._freezes[slot] = (term, index)
            self.departed.add(slot)
        for slot, index in activations:
            self._activations[slot] = (term, index)
            held = [(d, f) for d, f in self._activation_waits.pop(slot, ()) if not f.done()]
            if not held:
                continue
            try:
                writes = self.propose([d for d, _ in held])
            except ProposalDropped as e:
                for _, f in held:
                    f.set_exception(e)
                continue
            for (_, f), write in zip(held, writes, strict=True):
                f.set_result(write)
        for pending in (self._activations, self._freezes):
            for slot in [s for s, (_, i) in pending.items() if i <= self.applied]:
                del pending[slot]

    def freeze_pending(self, slot: int) -> bool:
        """Whether this replica, as leader, proposed a Freeze of ``slot`` not applied yet (a
        hint: a request for the slot can be sent to the target at once)."""
        return self._pending(self._freezes, slot)

    def _pending(self, proposed: dict[int, tuple[int, int]], slot: int) -> bool:
        """Whether ``slot``'s entry in ``proposed`` ((term, index) proposed here) is still
        in this term and not applied; forgets it once it is not."""
        at = proposed.get(slot)
        if at is None:
            return False
        if at > (self.raw.raft.term, self.applied):
            return True
        del proposed[slot]
        return False

    def read_barrier(self) -> asyncio.Future[int]:
        """A future resolving to a read index once leadership is confirmed (shared per turn)."""
        if not self.is_leader:
            raise NotLeader(self.leader_id)
        if self._read_round is None or self._read_round.done():
            ctx = next(self._ctx).to_bytes(8, "big")
            self.raw.read_index(ctx)
            fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self._read_round = fut
            self._read_rounds[ctx] = fut
        return self._read_round

    def wait_applied(self, index: int) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.applied >= index:
            fut.set_result(None)
        else:
            bisect.insort(self._apply_waits, (index, next(self._wait_seq), fut))
        return fut

    # -- after a Ready was persisted and applied (event loop thread) ------------------------
    def on_ready_done(self, rd: Ready, results: dict[int, KvResult]) -> None:
        if rd.soft_state is not None and rd.soft_state.role != StateRole.LEADER:
            self._fail_reads(NotLeader(rd.soft_state.leader_id))
        for e in rd.committed_entries:
            if e.type == EntryType.CONF_CHANGE:
                self.conf_state = self._apply_cc(e)
            self._resolve_write(e, results.get(e.index))
        if rd.snapshot is not None:
            self.applied = max(self.applied, rd.snapshot.metadata.index)
            self.conf_state = rd.snapshot.metadata.conf_state
        if rd.committed_entries:
            self.applied = rd.committed_entries[-1].index
        for rs in rd.read_states:
            fut = self._read_rounds.pop(rs.request_ctx, None)
            if fut is not None and not fut.done():
                fut.set_result(rs.index)
        self._wake_applied()

    def _apply_cc(self, e: Entry) -> ConfState:
        cs = self.raw.apply_conf_change(ConfChange.decode(e.data))
        return ConfState(tuple(cs.voters), tuple(cs.learners))

    def _resolve_write(self, e: Entry, result: KvResult | None) -> None:
        waiting = self._writes.pop(e.index, None)
        if waiting is None:
            return
        term, fut = waiting
        if fut.done():
            return
        if term != e.term:
            fut.set_exception(ProposalDropped(f"entry {e.index} was replaced by another leader"))
        elif result is not None:
            fut.set_result(result)
        else:
            fut.set_exception(ProposalDropped(f"entry {e.index} carried no command"))

    def _wake_applied(self) -> None:
        waits = self._apply_waits
        n = 0
        while n < len(waits) and waits[n][0] <= self.applied:
            fut = waits[n][2]
            if not fut.done():
                fut.set_result(None)
            n += 1
        if n:
            del waits[:n]

    def _fail_reads(self, err: Exception) -> None:
        for fut in self._read_rounds.values():
            if not fut.done():
                fut.set_exception(err)
        self._read_rounds.clear()
        self._read_round = None

    def forget_write(self, fut: asyncio.Future[KvResult]) -> None:
        """The caller stopped waiting (timeout): drop its bookkeeping, keep the entry."""
        for index, (_, f) in list(self._writes.items()):
            if f is fut:
                del self._writes[index]
                return

    def fail_all(self, err: Exception) -> None:
        for _, write in self._writes.values():
            if not write.done():
                write.set_exception(err)
        self._writes.clear()
        self._fail_reads(err)
        for _, _, wait in self._apply_waits:
            if not wait.done():
                wait.set_exception(err)
        self._apply_waits.clear()
