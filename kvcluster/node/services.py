"""The gRPC services of a node: KV (client API), Admin and ClusterInfo.

Contract:
- The edge: every request is validated here (types, sizes, known op) and a bad one gets
  INVALID with the reason — it never reaches the log and never hurts the node.
- Writes are proposed to their group's leader and answered after they are applied; reads
  are linearizable through ReadIndex unless the request asks for STALE. A request that is
  still pending at the deadline is answered TIMEOUT: its outcome is unknown.
- TEST ONLY: with ``KVCLUSTER_UNSAFE_STALE_READS=1`` in the environment, every read is
  served from this replica's applied state without ReadIndex, on any replica, leader or
  not: linearizability is broken on purpose, so that jepsen-lite can show it catches it.
  The node logs a warning naming the variable at start-up.
- A replica that is not the leader answers NOT_LEADER with the leader's address if known;
  so does a node that is shutting down (the request did not happen: retry elsewhere).
- Slot migration, at the source: a request the state machine refuses with TRYAGAIN because
  the slot is frozen is answered ASK with the target's leader at once (a frozen move is
  decided: the meta group never aborts it), and MOVED once the slot is released.
- At the target: a request sent with ASKING goes to the group of this node that is
  importing the slot (or has activated it) even while this node's layout still names the
  source. Refused there with TRYAGAIN (the copy is not active yet), it is held up to
  ``PARK_SECONDS`` and run again once the copy is active. So a client sees a cutover as
  one slow request plus one redirect, not a series of retries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from kvcluster.errors import InvalidArgument, KvClusterError, NotLeader, ProposalDropped
from kvcluster.kv.commands import READ_OPS, KvCommand, encode_command, validate_request
from kvcluster.kv.result import KvResult, Status
from kvcluster.kv.slot_moves import SlotState
from kvcluster.meta import META_GROUP
from kvcluster.sharding import key_slot
from kvcluster.storage.errors import StorageFull
from kvcluster.v1 import admin_pb2, admin_pb2_grpc, kv_pb2, kv_pb2_grpc

if TYPE_CHECKING:
    from kvcluster.node.group import GroupReplica
    from kvcluster.node.node import Node

__all__ = ["UNSAFE_STALE_READS_ENV", "AdminService", "ClusterInfoService", "KvService"]

log = logging.getLogger(__name__)

#: How long a request refused with TRYAGAIN is held for its slot's release (see _park).
PARK_SECONDS = 0.5

#: TEST ONLY (jepsen-lite's self-test): serve every read locally, without ReadIndex.
UNSAFE_STALE_READS_ENV = "KVCLUSTER_UNSAFE_STALE_READS"


def _response(r: KvResult) -> kv_pb2.Response:
    return kv_pb2.Response(
        status=int(r.status),  # type: ignore[arg-type]  # kv.result.Status mirrors kv_pb2.Status
        value=r.value,
        int_value=r.int_value,
        error=r.error,
    )


def _answer(node: Node, slot: int, r: KvResult) -> kv_pb2.Response:
    """The response for a state-machine answer; MOVED (a slot migrated away: ``int_value``
    is its group) gets the owner's address and the layout's epoch, TRYAGAIN its slot."""
    if r.status == Status.ASK:
        return kv_pb2.Response(
            status=kv_pb2.ASK, slot=slot, address=node.moved_address(r.int_value), error=r.error
        )
    if r.status == Status.MOVED:
        return kv_pb2.Response(
            status=kv_pb2.MOVED,
            slot=slot,
            address=node.moved_address(r.int_value),
            epoch=node.meta.epoch,
            error=r.error,
        )
    if r.status == Status.TRYAGAIN:
        return kv_pb2.Response(status=kv_pb2.TRYAGAIN, slot=slot, error=r.error)
    return _response(r)


def _error(status: Any, msg: str) -> kv_pb2.Response:
    return kv_pb2.Response(status=status, error=msg)


class KvService(kv_pb2_grpc.KVServicer):
    def __init__(self, node: Node) -> None:
        self.node = node
        self.unsafe_stale_reads = os.environ.get(UNSAFE_STALE_READS_ENV) == "1"
        if self.unsafe_stale_reads:
            logging.getLogger(__name__).warning(
                "%s=1: UNSAFE, TEST ONLY: reads are served from local state without "
                "ReadIndex, on any replica; linearizability is broken on purpose",
                UNSAFE_STALE_READS_ENV,
            )

    async def Execute(self, request: kv_pb2.BatchRequest, context: Any) -> kv_pb2.BatchResponse:
        return await self._execute(request)

    async def Pipeline(
        self, request_iterator: AsyncIterator[kv_pb2.BatchRequest], context: Any
    ) -> AsyncIterator[kv_pb2.BatchResponse]:
        """Each batch runs as soon as it arrives and is answered as soon as it completes
        (the client matches answers by ``batch_id``): a slow write does not hold up a read
        sent after it. The stream is shared by many callers, so a batch that fails is
        answered on its own (TIMEOUT: outcome unknown) and the others go on. A client
        that goes away cancels its batches still running, as a unary call's would be."""
        answers: asyncio.Queue[kv_pb2.BatchResponse | None] = asyncio.Queue()
        running: dict[asyncio.Task[kv_pb2.BatchResponse], kv_pb2.BatchRequest] = {}
        reading = True

        def finished(task: asyncio.Task[kv_pb2.BatchResponse]) -> None:
            batch = running.pop(task, None)
            if batch is not None and not task.cancelled():
                error = task.exception()
                if error is None:
                    answers.put_nowait(task.result())
                else:
                    log.error("batch %d failed: %r", batch.batch_id, error, exc_info=error)
                    unknown = _error(kv_pb2.TIMEOUT, f"outcome unknown: {error!r}")
                    answers.put_nowait(
                        kv_pb2.BatchResponse(
                            responses=[unknown] * len(batch.requests), batch_id=batch.batch_id
                        )
                    )
            if not reading and not running:
                answers.put_nowait(None)

        async def reader() -> None:
            nonlocal reading
            try:
                async for batch in request_iterator:
                    task = asyncio.create_task(self._execute(batch))
                    running[task] = batch
                    task.add_done_callback(finished)
            finally:
                reading = False
                if not running:
                    answers.put_nowait(None)

        feeder = asyncio.create_task(reader())
        try:
            while (answer := await answers.get()) is not None:
                yield answer
            await feeder  # the request stream's own error, if it ended with one
        finally:
            feeder.cancel()
            for task in list(running):
                task.cancel()

    async def _execute(self, batch: kv_pb2.BatchRequest) -> kv_pb2.BatchResponse:
        node = self.node
        t0 = time.perf_counter()
        n = len(batch.requests)
        out: list[kv_pb2.Response | None] = [None] * n
        node.metrics.client_batch.observe(n)
        if not node.accepting:
            # Not applied, and never will be here: NOT_LEADER (the client retries elsewhere,
            # at the group's leader if this node knows another one), not a final error.
            return kv_pb2.BatchResponse(
                responses=[self._shutting_down(req.key) for req in batch.requests],
                batch_id=batch.batch_id,
            )
        now = node.now_ms()
        # Route each request by its key's slot: serve it here if this node hosts the owning
        # group's leader; otherwise answer MOVED / NOT_LEADER / CLUSTERDOWN.
        per_group: dict[
            int, tuple[list[tuple[int, int, bytes, bool]], list[tuple[int, KvCommand, bool]]]
        ] = {}
        for i, req in enumerate(batch.requests):
            try:
                cmd = KvCommand(
                    req.op,
                    bytes(req.key),
                    bytes(req.value),
                    bytes(req.expected) if req.has_expected else None,
                    req.ttl_ms,
                    req.delta,
                    req.flags,
                    req.client_id,
                    req.seq,
                    now,
                )
                validate_request(cmd)
            except (InvalidArgument, ValueError) as e:
                out[i] = _error(kv_pb2.INVALID, str(e))
                continue
            slot = key_slot(cmd.key)
            owner = node.owner_of(slot)
            if req.asking or not node.leads(owner):
                # A slot whose move is decided may arrive here before the flip does: sent
                # with ASK by its frozen source, the group importing it takes the request;
                # and a group of ours where it is active serves it in any case.
                owner = node.importing_group(slot, active_only=not req.asking) or owner
            if owner is None:
                out[i] = _error(kv_pb2.CLUSTERDOWN, f"slot {slot} has no owner")
                continue
            g = node.groups.get(owner)
            if g is None:
                out[i] = kv_pb2.Response(
                    status=kv_pb2.MOVED,
                    slot=slot,
                    address=node.moved_address(owner),
                    epoch=node.meta.epoch,
                    error="moved",
                )
                continue
            if slot in g.departed and (gone := self._departed(g, slot)) is not None:
                out[i] = _answer(node, slot, gone)  # frozen (or being frozen) or released here
                continue
            writes, reads = per_group.setdefault(owner, ([], []))
            if req.op in READ_OPS:
                reads.append((i, cmd, req.consistency == kv_pb2.STALE))
            elif node.storage_full:
                out[i] = _error(kv_pb2.UNAVAILABLE, "storage full: write refused, not applied")
            else:
                writes.append((i, slot, encode_command(cmd), req.asking))

        waits: list[asyncio.Future[Any]] = []
        for gid, (writes, reads) in per_group.items():
            g = node.groups[gid]
            if writes:
                waits.append(asyncio.ensure_future(self._writes(g, writes, out)))
            if reads:
                waits.append(asyncio.ensure_future(self._reads(g, reads, out)))
        if waits:
            node.kick()
            timeout = node.cfg.request_timeout_ms / 1000
            _, pending = await asyncio.wait(waits, timeout=timeout)
            for t in pending:
                t.cancel()
        responses = [
            r if r is not None else _error(kv_pb2.TIMEOUT, "outcome unknown: timed out")
            for r in out
        ]
        node.metrics.execute_seconds.observe(time.perf_counter() - t0)
        return kv_pb2.BatchResponse(responses=responses, batch_id=batch.batch_id)

    def _shutting_down(self, key: bytes) -> kv_pb2.Response:
        node = self.node
        owner = node.owner_of(key_slot(key))
        g = node.groups.get(owner) if owner is not None else None
        leader = g.leader_id if g is not None and g.leader_id != node.cfg.node_id else 0
        return kv_pb2.Response(
            status=kv_pb2.NOT_LEADER,
            leader_id=leader,
            address=node.address_of(leader) if leader else "",
            error="node is shutting down",
        )

    def _not_leader(self, g: GroupReplica) -> kv_pb2.Response:
        leader = g.leader_id
        return kv_pb2.Response(
            status=kv_pb2.NOT_LEADER,
            leader_id=leader,
            address=self.node.address_of(leader) if leader else "",
            error="not the leader",
        )

    async def _writes(
        self, g: GroupReplica, writes: list[tuple[int, int, bytes, bool]], out: list[Any]
    ) -> None:
        # A write sent with ASKING to a slot still arriving here waits before it is proposed
        # (for the slot's Activate to be proposed, then it lands right behind it), instead of
        # spending a commit on a TRYAGAIN.
        held: list[tuple[int, int, bytes, bool]] = []
        now: list[tuple[int, int, bytes, bool]] = []
        for w in writes:
            rec = self.node.slot_state(g.group_id, w[1]) if w[3] else None
            (held if rec is not None and rec.state == SlotState.IMPORTING else now).append(w)
        jobs = [self._held_write(g, i, slot, data, out) for i, slot, data, _ in held]
        # Proposed before the first await: a read later in the same batch is served after.
        futs = self._propose(g, now, out) if now else None
        if futs is not None:
            jobs.append(self._await_writes(g, now, futs, out))
        await asyncio.gather(*jobs)

    def _propose(
        self, g: GroupReplica, writes: list[tuple[int, int, bytes, bool]], out: list[Any]
    ) -> list[asyncio.Future[KvResult]] | None:
        """Propose ``writes``; None (and their answers in ``out``) if this is no leader."""
        try:
            futs = g.propose([data for _, _, data, _ in writes])
        except NotLeader:
            for i, _, _, _ in writes:
                out[i] = self._not_leader(g)
            return None
        except ProposalDropped as e:
            for i, _, _, _ in writes:
                out[i] = _error(kv_pb2.NOT_LEADER, str(e))
            return None
        self.node.kick()
        self.node.metrics.group(g.group_id).proposals.inc(len(writes))
        return futs

    async def _held_write(
        self, g: GroupReplica, i: int, slot: int, data: bytes, out: list[Any]
    ) -> None:
        deadline = asyncio.get_running_loop().time() + PARK_SECONDS
        try:
            parked = await self._park(g, slot, deadline, hold=data)
        except ProposalDropped:
            out[i] = self._not_leader(g)
            return
        if isinstance(parked, KvResult):
            out[i] = _answer(self.node, slot, parked)
            return
        write = [(i, slot, data, True)]
        futs = [parked] if parked is not None else self._propose(g, write, out)
        if futs is not None:
            await self._await_writes(g, write, futs, out, deadline)

    async def _await_writes(
        self,
        g: GroupReplica,
        writes: list[tuple[int, int, bytes, bool]],
        futs: list[asyncio.Future[KvResult]],
        out: list[Any],
        deadline: float | None = None,
    ) -> None:
        """Answer each of the proposed ``writes`` once applied; one refused with TRYAGAIN is
        held (see ``_park``) and proposed again."""
        pending = list(futs)
        try:
            for (i, slot, data, _), fut in zip(writes, futs, strict=True):
                try:
                    result = await fut
                    if deadline is None:
                        deadline = asyncio.get_running_loop().time() + PARK_SECONDS
                    while result.status == Status.TRYAGAIN:
                        parked = await self._park(g, slot, deadline, hold=data)
                        if isinstance(parked, KvResult):
                            result = parked
                            break
                        if parked is None:  # served here now: propose it again
                            (parked,) = g.propose([data])
                        # (else it was just proposed right behind the slot's Activate)
                        pending.append(parked)
                        self.node.kick()
                        result = await parked
                    out[i] = _answer(self.node, slot, result)
                except ProposalDropped:
                    # Certainly not applied at that index, and it can never be: retry.
                    out[i] = self._not_leader(g)
                except StorageFull as e:
                    out[i] = _error(kv_pb2.UNAVAILABLE, str(e))
                except KvClusterError as e:
                    out[i] = _error(kv_pb2.TIMEOUT, f"outcome unknown: {e}")
        except asyncio.CancelledError:
            for f in pending:
                g.forget_write(f)
            raise

    async def _reads(
        self, g: GroupReplica, reads: list[tuple[int, KvCommand, bool]], out: list[Any]
    ) -> None:
        if self.unsafe_stale_reads:  # TEST ONLY: see UNSAFE_STALE_READS_ENV
            self._serve(g, [(i, c) for i, c, _ in reads], out, "unsafe_stale")
            return
        linear = [(i, c) for i, c, stale in reads if not stale]
        stale = [(i, c) for i, c, s in reads if s]
        if stale:
            self._serve(g, stale, out, "stale")
        if not linear:
            return
        try:
            index = await g.read_barrier()
            await g.wait_applied(index)
        except NotLeader:
            for i, _ in linear:
                out[i] = self._not_leader(g)
            return
        self._serve(g, linear, out, "linearizable")
        frozen = [(i, c) for i, c in linear if out[i].status == kv_pb2.TRYAGAIN]
        for i, cmd in frozen:
            slot = key_slot(cmd.key)
            deadline = asyncio.get_running_loop().time() + PARK_SECONDS
            parked = await self._park(g, slot, deadline)
            if isinstance(parked, KvResult):
                out[i] = _answer(self.node, slot, parked)
                continue
            try:  # served here now (the copy became active): a fresh linearizable read
                await g.wait_applied(await g.read_barrier())
            except NotLeader:
                out[i] = self._not_leader(g)
                continue
            self._serve(g, [(i, cmd)], out, "linearizable")

    def _departed(self, g: GroupReplica, slot: int) -> KvResult | None:
        """ASK or MOVED if ``slot`` is frozen or released in ``g`` (its record says so), or
        migrating with its Freeze proposed here and not yet applied: the move is decided, and
        the target holds the request until its copy is active. Else None, and ``slot`` is
        no longer remembered as departed."""
        rec = self.node.slot_state(g.group_id, slot)
        if rec is not None and (
            rec.state == SlotState.FROZEN
            or (rec.state == SlotState.MIGRATING and g.freeze_pending(slot))
        ):
            return KvResult(Status.ASK, int_value=rec.peer, error="slot moving: ask there")
        if rec is not None and rec.state == SlotState.RELEASED:
            return KvResult(Status.MOVED, int_value=rec.peer, error="slot moved")
        g.departed.discard(slot)
        return None

    async def _park(
        self, g: GroupReplica, slot: int, deadline: float, *, hold: bytes | None = None
    ) -> KvResult | asyncio.Future[KvResult] | None:
        """Where a request refused with TRYAGAIN on ``slot`` goes next. The request did not
        happen here, so this changes no outcome, only how soon the client finds the slot:

        - frozen here: ASK, to the target's leader (the move is decided);
        - released here: MOVED, to the new owner's leader;
        - still arriving here (IMPORTING): held until the copy is active (then None) or
          until ``deadline`` (loop time; then TRYAGAIN). With ``hold`` (a write's entry),
          the write is proposed right behind the slot's Activate as soon as this leader
          proposes it, and its proposal future is returned;
        - active here: None, the caller may run the request here once more;
        - otherwise (the move was aborted before its freeze): None if this group owns the
          slot in this node's layout, else MOVED to the owner."""
        node = self.node
        loop = asyncio.get_running_loop()
        while True:
            rec = node.slot_state(g.group_id, slot)
            state = rec.state if rec is not None else None
            if state in (SlotState.FROZEN, SlotState.RELEASED):
                g.departed.add(slot)  # the next requests are answered without a proposal
                return self._departed(g, slot)
            if state == SlotState.ACTIVE:
                return None
            if state != SlotState.IMPORTING:
                owner = node.owner_of(slot)
                if owner is not None and owner != g.group_id:
                    return KvResult(Status.MOVED, int_value=owner, error="slot moved")
                return None
            left = deadline - loop.time()
            if left <= 0:
                return KvResult(Status.TRYAGAIN, error="slot is being migrated: retry shortly")
            applied = g.wait_applied(g.applied + 1)
            held = g.hold_for_activation(slot, hold) if hold is not None else None
            waits: set[asyncio.Future[Any]] = {applied} if held is None else {applied, held}
            await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            if held is not None and held.done():
                applied.cancel()
                return held.result()  # proposed behind the Activate (or raises)
            for fut in waits:
                fut.cancel()  # a held write not proposed yet is dropped from the hold

    def _serve(
        self, g: GroupReplica, reads: list[tuple[int, KvCommand]], out: list[Any], level: str
    ) -> None:
        store = self.node.store
        assert store is not None
        now = self.node.now_ms()
        with store.read() as txn:
            view = txn.kv_read_view(g.group_id)
            for i, cmd in reads:
                out[i] = _answer(self.node, key_slot(cmd.key), self.node.sm.read(view, cmd, now))
        self.node.metrics.group(g.group_id).reads(level).inc(len(reads))


class AdminService(admin_pb2_grpc.AdminServicer):
    def __init__(self, node: Node) -> None:
        self.node = node

    async def Status(self, request: Any, context: Any) -> admin_pb2.NodeStatus:
        node = self.node
        st = admin_pb2.NodeStatus(
            node_id=node.cfg.node_id, cluster_id=node.cfg.cluster_id, address=node.cfg.address
        )
        for nid, addr in node.cfg.peers.items():
            st.peers[nid] = addr
        for g in node.groups.values():
            raft = g.raw.raft
            gs = st.groups.add(
                group_id=g.group_id,
                role=raft.role.name,
                leader_id=raft.leader_id,
                term=raft.term,
                commit_index=raft.log.committed,
                applied_index=g.applied,
                last_index=raft.log.last_index(),
                voters=list(g.conf_state.voters),
            )
            if g.is_leader:
                for pid, pr in raft.tracker.progress.items():
                    gs.match_index[pid] = pr.match_index
        return st

    async def TransferLeader(
        self, request: admin_pb2.TransferLeaderRequest, context: Any
    ) -> admin_pb2.TransferLeaderResponse:
        g = self.node.groups.get(request.group_id)
        if g is None:
            return admin_pb2.TransferLeaderResponse(error=f"no group {request.group_id} here")
        if not g.is_leader:
            return admin_pb2.TransferLeaderResponse(
                error="this node is not the leader", leader_id=g.leader_id
            )
        to = request.to_node
        if to == 0:
            progress = g.raw.raft.tracker.progress
            others = [p for p in g.conf_state.voters if p != self.node.cfg.node_id]
            if not others:
                return admin_pb2.TransferLeaderResponse(error="no other voter")
            to = max(others, key=lambda p: progress[p].match_index)
        g.raw.transfer_leader(to)
        self.node.kick()
        return admin_pb2.TransferLeaderResponse(ok=True, leader_id=to)


class ClusterInfoService(admin_pb2_grpc.ClusterInfoServicer):
    """The slot map as this node knows it, with the leaders of the groups it hosts."""

    def __init__(self, node: Node) -> None:
        self.node = node
        # The answer depends only on the layout and the leader hints: clients ask again and
        # again after a flip, and encoding thousands of ranges is not free.
        self._cached: tuple[object, tuple[tuple[int, int], ...], bytes] | None = None

    async def ClusterSlots(self, request: Any, context: Any) -> admin_pb2.ClusterSlotsResponse:
        meta = self.node.meta
        hints = self.node.leader_hints()
        key = tuple(sorted(hints.items()))
        cached = self._cached
        if cached is None or cached[0] is not meta or cached[1] != key:
            encoded = json.dumps(meta.slot_map(hints).to_dict()).encode()
            cached = self._cached = (meta, key, encoded)
        return admin_pb2.ClusterSlotsResponse(slot_map=cached[2], epoch=meta.epoch)


class ClusterAdminService(admin_pb2_grpc.ClusterAdminServicer):
    def __init__(self, node: Node) -> None:
        self.node = node

    async def CreateCluster(
        self, request: admin_pb2.CreateClusterRequest, context: Any
    ) -> admin_pb2.CreateClusterResponse:
        node = self.node
        meta = node.groups[META_GROUP]
        try:
            result = await node.create_cluster(request.groups, request.replicas)
        except NotLeader:
            leader = meta.leader_id
            return admin_pb2.CreateClusterResponse(
                error="not the meta leader",
                leader_id=leader,
                leader_address=node.address_of(leader) if leader else "",
            )
        except InvalidArgument as e:
            return admin_pb2.CreateClusterResponse(error=str(e))
        except (KvClusterError, TimeoutError) as e:
            return admin_pb2.CreateClusterResponse(error=f"outcome unknown: {e!r}")
        smap = node.meta.slot_map(node.leader_hints())
        return admin_pb2.CreateClusterResponse(
            ok=result.ok,
            error=result.error,
            epoch=result.epoch,
            slot_map=json.dumps(smap.to_dict()).encode(),
        )
