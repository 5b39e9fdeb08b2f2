"""The node runtime: hosts group replicas on one asyncio loop, persists, sends, applies.

Contract:
- The only place with tasks and timers. One ticker drives every group's ``tick()``; one
  driver task turns Readies into work. Everything touching a RawNode or the store runs on
  the event loop thread, so nothing here needs a lock.
- One loop turn of the driver handles every group that has a Ready: all their entries and
  hard states, and every committed entry they apply (with the applied index, in the same
  transaction), go into ONE LMDB write transaction, synced once (group commit). Only after
  that commit are the Readies' messages handed to the transport (persist before send), the
  clients answered, and the RawNodes advanced. The exception: a Ready whose messages are
  all a leader's appends and heartbeats, with no new term or vote, sends them before the
  write, so the followers persist in parallel with the leader (Raft thesis 10.2.1;
  ``Ready.may_send_before_persist``).
- Proposals and reads that arrive while the driver is busy accumulate in the RawNodes and
  leave together in the next Ready: that is the batching.
- Recovery: at start the store holds every group's log, hard state, membership and applied
  index; the RawNode resumes from them and re-applies nothing that was applied.
- Shutdown (``stop``): stop accepting requests, hand leadership away where a caught-up
  follower exists, answer what is in flight, close the servers, the transport and the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from kvcluster.errors import Compacted, KvClusterError, NotLeader, ProposalDropped
from kvcluster.kv.commands import encode_command
from kvcluster.kv.result import KvResult
from kvcluster.kv.slot_moves import SlotRecord, SlotState, read_record
from kvcluster.kv.state_machine import KvStateMachine
from kvcluster.meta import (
    META_GROUP,
    Bootstrap,
    MetaResult,
    MetaState,
    MetaStateMachine,
    plan_bootstrap,
)
from kvcluster.node.config import NodeConfig
from kvcluster.node.expiry import ExpiryScan
from kvcluster.node.group import GroupReplica
from kvcluster.node.http import AdminHttp
from kvcluster.node.metrics import NodeMetrics
from kvcluster.node.stalled_moves import StalledMoves
from kvcluster.node.stalled_moves import finish as finish_moves
from kvcluster.raft import (
    ConfChange,
    Config,
    ConfState,
    EntryType,
    MessageType,
    Ready,
    StateRole,
)
from kvcluster.sharding import Phase, key_slot
from kvcluster.storage import (
    NodeStore,
    StorageFull,
    UnknownGroup,
    WriteBatch,
    compaction_index,
)
from kvcluster.transport.grpc_transport import SERVER_OPTIONS as TRANSPORT_SERVER_OPTIONS
from kvcluster.transport.grpc_transport import GrpcTransport
from kvcluster.v1 import admin_pb2_grpc, kv_pb2_grpc, raft_pb2_grpc

__all__ = ["Node"]

log = logging.getLogger("kvcluster.node")

# The transport's options (message size, keepalive allowance) plus no port sharing.
SERVER_OPTIONS = [*TRANSPORT_SERVER_OPTIONS, ("grpc.so_reuseport", 0)]


class Node:
    def __init__(self, cfg: NodeConfig) -> None:
        self.cfg = cfg
        self.metrics = NodeMetrics()
        self.sm = KvStateMachine(key_slot)
        self.meta_sm = MetaStateMachine()
        self.meta = MetaState()
        self._slot_map = self.meta.slot_map()
        self._bootstrap_pending: asyncio.Future[Any] | None = None
        self.groups: dict[int, GroupReplica] = {}
        self.store: NodeStore | None = None
        self.transport: GrpcTransport | None = None
        self._server: grpc.aio.Server | None = None
        self._http: AdminHttp | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._accepting = False
        self.storage_full = False  # the last write hit a full LMDB map (see _write_until_done)
        self._compactions: dict[int, int] = {}  # group -> index: cut by the next write
        self._rng = random.Random()
        # One thread does every write transaction (LMDB allows one writer at a time).
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kv-io")
        # Snapshots for followers are built here, off the loop (storage.snapshot_maker).
        self._snapshots = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kv-snap")

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.cfg
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = NodeStore(
            cfg.data_dir,
            map_size=cfg.map_size,
            sync=cfg.fsync,
            snapshot_executor=self._snapshots,
        )
        self.store.check_identity(cfg.cluster_id, cfg.node_id)
        # The meta group: every node of the cluster is a voter.
        if META_GROUP not in self.store.groups():
            self.store.create_group(META_GROUP, ConfState(tuple(sorted(cfg.peers)), ()))
        self._open_group(META_GROUP)
        self._load_meta()

        self.transport = GrpcTransport(
            cfg.node_id,
            cfg.cluster_id,
            on_messages=self._on_messages,
            on_unreachable=self._on_unreachable,
        )
        for nid, addr in cfg.peers.items():
            if nid != cfg.node_id:
                self.transport.set_peer(nid, addr)

        from kvcluster.node.migration_service import MigrationService
        from kvcluster.node.services import (
            AdminService,
            ClusterAdminService,
            ClusterInfoService,
            KvService,
        )

        self._server = grpc.aio.server(options=SERVER_OPTIONS)
        kv_pb2_grpc.add_KVServicer_to_server(KvService(self), self._server)
        admin_pb2_grpc.add_AdminServicer_to_server(AdminService(self), self._server)
        admin_pb2_grpc.add_ClusterInfoServicer_to_server(ClusterInfoService(self), self._server)
        admin_pb2_grpc.add_ClusterAdminServicer_to_server(ClusterAdminService(self), self._server)
        admin_pb2_grpc.add_MigrationServicer_to_server(MigrationService(self), self._server)
        raft_pb2_grpc.add_RaftPeerServicer_to_server(self.transport.servicer(), self._server)
        if self._server.add_insecure_port(cfg.listen) == 0:
            raise KvClusterError(f"cannot listen on {cfg.listen}")
        await self._server.start()
        await self.transport.start()
        if cfg.http:
            self._http = AdminHttp(cfg.http, self.health, self.metrics)
            await self._http.start()
        self._accepting = True
        self._tasks = [
            asyncio.create_task(self._ticker(), name="ticker"),
            asyncio.create_task(self._driver(), name="driver"),
            asyncio.create_task(self._watch_stalled_moves(), name="stalled-moves"),
            asyncio.create_task(self._expire_keys(), name="expire-keys"),
        ]
        self._wake.set()

    # -- the layout (meta group) ---------------------------------------------------------
    def _load_meta(self) -> None:
        """Adopt the layout the meta group has applied here: open this node's shard groups.
        Runs between driver turns (no write transaction is open)."""
        store = self.store
        assert store is not None
        with store.read() as txn:
            state = self.meta_sm.load(txn.kv_read_view(META_GROUP))
        if state.epoch == self.meta.epoch:
            return
        if state.bootstrapped and state.cluster_id != self.cfg.cluster_id:
            raise KvClusterError(
                f"meta layout is for cluster {state.cluster_id!r}, this node is in "
                f"{self.cfg.cluster_id!r}"
            )
        self.meta = state
        self._slot_map = state.slot_map()
        for gid in state.groups_of(self.cfg.node_id):
            if gid in self.groups:
                continue
            if gid not in store.groups():
                store.create_group(gid, ConfState(state.groups[gid], ()))
            self._open_group(gid)
            log.info("group %d: replica opened (voters %s)", gid, list(state.groups[gid]))
        mine = set(state.groups_of(self.cfg.node_id))
        for gid in [g for g in self.groups if g != META_GROUP and g not in mine]:
            # The group was removed from the layout (it owned no slot): close the replica and
            # drop its data.
            self.groups.pop(gid).fail_all(KvClusterError(f"group {gid} was removed"))
            store.drop_group(gid)
            log.info("group %d: removed from the layout; replica closed and dropped", gid)
        self._wake.set()

    def _maybe_bootstrap(self) -> None:
        """With ``bootstrap_groups``, the meta leader proposes the first layout once."""
        g = self.groups[META_GROUP]
        if self.cfg.bootstrap_groups <= 0 or self.meta.bootstrapped or not g.is_leader:
            return
        if self._bootstrap_pending is not None and not self._bootstrap_pending.done():
            return
        plan = plan_bootstrap(
            self.cfg.cluster_id,
            dict(self.cfg.peers),
            self.cfg.bootstrap_groups,
            self.cfg.bootstrap_replicas,
        )
        try:
            (self._bootstrap_pending,) = g.propose([Bootstrap(plan).encode()])
        except KvClusterError:
            return
        self._bootstrap_pending.add_done_callback(lambda f: f.exception())
        self._wake.set()

    async def create_cluster(self, groups: int, replicas: int) -> MetaResult:
        """Propose the layout (kvctl cluster create). Raises NotLeader off the meta leader."""
        plan = plan_bootstrap(self.cfg.cluster_id, dict(self.cfg.peers), groups, replicas)
        (fut,) = self.groups[META_GROUP].propose([Bootstrap(plan).encode()])
        self._wake.set()
        result = await asyncio.wait_for(fut, self.cfg.request_timeout_ms / 1000)
        assert isinstance(result, MetaResult)
        return result

    def owner_of(self, slot: int) -> int | None:
        return self._slot_map.owner(slot) if self.meta.bootstrapped else None

    def leads(self, gid: int | None) -> bool:
        """Whether this node hosts group ``gid`` and is its leader."""
        g = self.groups.get(gid) if gid is not None else None
        return g is not None and g.is_leader

    def slot_state(self, gid: int, slot: int) -> SlotRecord | None:
        """Group ``gid``'s record of ``slot`` (its side of a migration), as applied here."""
        assert self.store is not None
        with self.store.read() as txn:
            return read_record(txn.kv_read_view(gid), slot)

    def importing_group(self, slot: int, *, active_only: bool = False) -> int | None:
        """A group of this node, other than the slot's owner in this node's layout, that has
        activated ``slot`` or (unless ``active_only``) is importing it; None if there is
        none. A slot active in a group is that group's, whether or not this node has seen
        the flip yet: its move was decided (frozen at the source) before it was activated."""
        store = self.store
        if store is None:
            return None
        owner = self.owner_of(slot)
        with store.read() as txn:
            for gid in self.groups:
                if gid in (META_GROUP, owner):
                    continue
                rec = read_record(txn.kv_read_view(gid), slot)
                if rec is None:
                    continue
                if rec.state == SlotState.ACTIVE or (
                    rec.state == SlotState.IMPORTING and not active_only
                ):
                    return gid
        return None

    def moved_address(self, owner: int) -> str:
        """Where to send a slot owned by group ``owner``: its leader if this node hosts a
        replica of it and knows the leader; else the first replica (if that one is a
        follower, the client follows its NOT_LEADER redirect)."""
        g = self.groups.get(owner)
        if g is not None and g.leader_id:
            return self.address_of(g.leader_id)
        replicas = self.meta.groups.get(owner, ())
        return self.cfg.peers.get(replicas[0], "") if replicas else ""

    def leader_hints(self) -> dict[int, int]:
        """Group id -> leader node id, for the groups this node hosts and knows a leader of."""
        return {gid: g.leader_id for gid, g in self.groups.items() if g.leader_id}

    def _open_group(self, gid: int) -> None:
        assert self.store is not None
        gs = self.store.group(gid)
        applied = gs.applied_index
        _, cs = gs.initial_state()
        config = Config(
            id=self.cfg.node_id,
            election_tick=self.cfg.election_ticks,
            heartbeat_tick=self.cfg.heartbeat_ticks,
            applied=applied,
            check_quorum=True,
            pre_vote=True,
            max_size_per_msg=1 << 20,
            max_inflight_msgs=256,
        )
        rng = random.Random(self._rng.getrandbits(64))
        self.groups[gid] = GroupReplica(gid, config, gs, rng, cs)

    async def stop(self) -> None:
        self._accepting = False
        await self._hand_off_leadership()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for g in self.groups.values():
            g.fail_all(KvClusterError("node shutting down"))
        if self._server is not None:
            await self._server.stop(grace=1.0)
        if self._http is not None:
            await self._http.stop()
        if self.transport is not None:
            await self.transport.stop()
        self._io.shutdown(wait=True)  # a write in progress finishes before the store closes
        if self.store is not None:
            self.store.close()  # waits for a snapshot being built
        self._snapshots.shutdown(wait=True)

    async def _hand_off_leadership(self, timeout: float = 3.0) -> None:
        """Transfer each group this node leads to its most caught-up voter, and wait a little
        for the transfers to take (a shutdown must not wait for an election timeout)."""
        moved = []
        for g in self.groups.values():
            if not g.is_leader:
                continue
            st = g.raw.status()
            best = max(
                (p for p in st.progress if p != self.cfg.node_id and p in g.conf_state.voters),
                key=lambda p: st.progress[p].match_index,
                default=None,
            )
            if best is not None:
                g.raw.transfer_leader(best)
                moved.append(g)
        if not moved:
            return
        self._wake.set()
        deadline = time.monotonic() + timeout
        while any(g.is_leader for g in moved) and time.monotonic() < deadline:
            await asyncio.sleep(self.cfg.tick_ms / 1000)

    # -- the loop --------------------------------------------------------------------------
    def kick(self) -> None:
        """Something happened to a RawNode: let the driver look for Readies."""
        self._wake.set()

    async def _ticker(self) -> None:
        interval = self.cfg.tick_ms / 1000
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            for g in list(self.groups.values()):
                g.raw.tick()
            self._maybe_bootstrap()
            self._wake.set()

    async def _watch_stalled_moves(self) -> None:
        """Finish decided slot moves that stopped making progress (``stalled_moves``), one
        run at a time, on a daemon thread (a node shutting down does not wait for it)."""
        stall_s = self.cfg.finish_stalled_moves_s
        if stall_s <= 0:
            return
        watch = StalledMoves(stall_s)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, stall_s / 4))
            leads = self.leads(META_GROUP)
            ids = watch.check(self._migration_phases() if leads else {}, leads, loop.time())
            if not ids:
                continue
            done = asyncio.Event()

            def run(ids: frozenset[int] = ids, done: asyncio.Event = done) -> None:
                try:
                    finish_moves(list(self.cfg.peers.values()), ids, step_deadline=stall_s)
                finally:
                    with contextlib.suppress(RuntimeError):  # the loop has closed
                        loop.call_soon_threadsafe(done.set)

            threading.Thread(target=run, name="finish-moves", daemon=True).start()
            await done.wait()

    async def _expire_keys(self) -> None:
        """Active expiry (``node.expiry``): every ``expire_keys_s``, each shard group this
        node leads proposes the deletion of the expired keys its next records hold."""
        every = self.cfg.expire_keys_s
        if every <= 0:
            return
        scan = ExpiryScan()
        while True:
            await asyncio.sleep(every)
            store = self.store
            assert store is not None
            if self.storage_full:
                continue  # no write would be taken; the scan positions stay good
            led = [(gid, g) for gid, g in self.groups.items() if gid != META_GROUP and g.is_leader]
            scan.keep({gid for gid, _ in led})
            now = self.now_ms()
            with store.read() as txn:  # one read transaction for the whole pass
                sweeps = [(gid, g, scan.next_pass(txn, gid, now)) for gid, g in led]
            for gid, g, sweep in sweeps:
                if sweep is None:
                    continue
                try:
                    (fut,) = g.propose([encode_command(sweep)])
                except (NotLeader, ProposalDropped):
                    continue
                self.kick()
                fut.add_done_callback(functools.partial(self._count_expired, gid))

    def _forget_snapshot(self, gid: int) -> None:
        maker = self.store.snapshot_maker if self.store is not None else None
        if maker is not None:
            maker.forget(gid)

    def _count_expired(self, gid: int, fut: asyncio.Future[KvResult]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return  # not applied as proposed here (leadership lost): a later pass retries
        self.metrics.group(gid).expired_keys.inc(fut.result().int_value)

    def _migration_phases(self) -> dict[int, Phase]:
        store = self.store
        assert store is not None
        with store.read() as txn:
            return self.meta_sm.migration_phases(txn.kv_read_view(META_GROUP))

    async def _driver(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Let requests that are already queued on the loop join this turn's Ready.
            await asyncio.sleep(0)
            try:
                await self._handle_readies(loop)
            except Exception:
                log.exception("driver failed; the node cannot continue safely")
                raise

    async def _handle_readies(self, loop: asyncio.AbstractEventLoop) -> None:
        readies = [(g, g.raw.ready()) for g in self.groups.values() if g.raw.has_ready()]
        if not readies:
            return
        writes = [
            (g, rd)
            for g, rd in readies
            if rd.entries or rd.hard_state or rd.snapshot or rd.committed_entries
        ]
        early = {g.group_id for g, rd in readies if rd.may_send_before_persist()}
        for g, rd in readies:
            if g.group_id in early:
                self._send_messages(g, rd)
        results: dict[int, dict[int, KvResult]] = {}
        if writes:  # a Ready of only messages or read states writes nothing
            # The write and its fsync run on the I/O thread while this loop keeps taking
            # requests and messages; they join the next Ready (the RawNodes accept steps
            # between ready() and advance()).
            compactions, self._compactions = self._compactions, {}
            results = await self._write_until_done(loop, writes, compactions)

        for g, rd in readies:
            if rd.snapshot is not None:
                md = rd.snapshot.metadata
                log.info(
                    "group %d: installed snapshot at %d (term %d)", g.group_id, md.index, md.term
                )
            if g.group_id not in early:
                self._send_messages(g, rd)
            g.on_ready_done(rd, results.get(g.group_id, {}))
            if rd.soft_state is not None and rd.soft_state.role != StateRole.LEADER:
                self._forget_snapshot(g.group_id)  # no longer its to send
            g.raw.advance(rd)
            self._update_gauges(g)
        meta_rd = next((rd for g, rd in readies if g.group_id == META_GROUP), None)
        if meta_rd is not None and (meta_rd.committed_entries or meta_rd.snapshot):
            self._load_meta()
        self._plan_compactions()
        if any(g.raw.has_ready() for g in self.groups.values()):
            self._wake.set()

    def _send_messages(self, g: GroupReplica, rd: Ready) -> None:
        transport = self.transport
        assert transport is not None
        for m in rd.messages:
            transport.send(m.to, g.group_id, m)
            if m.type == MessageType.SNAP:
                g.raw.report_snapshot(m.to, True)
        self.metrics.raft_messages.inc(len(rd.messages))

    async def _write_until_done(
        self,
        loop: asyncio.AbstractEventLoop,
        writes: list[tuple[GroupReplica, Ready]],
        compactions: dict[int, int],
    ) -> dict[int, dict[int, KvResult]]:
        """Persist and apply; while the storage is full, refuse new writes at the edge
        (UNAVAILABLE: they did not happen), keep serving stale reads, and retry this same
        batch until there is room (e.g. the operator raised --map-size-mb and restarted, or
        compaction freed pages). Writes already proposed stay pending: their outcome is
        unknown until then, never reported as failed."""
        while True:
            try:
                results = await loop.run_in_executor(self._io, self._write, writes, compactions)
            except StorageFull as e:
                if not self.storage_full:
                    log.error("%s; refusing writes until there is room", e)
                self.storage_full = True
                await asyncio.sleep(10 * self.cfg.tick_ms / 1000)
                continue
            if self.storage_full:
                log.warning("storage has room again; accepting writes")
            self.storage_full = False
            return results

    def _write(
        self, writes: list[tuple[GroupReplica, Ready]], compactions: dict[int, int]
    ) -> dict[int, dict[int, KvResult]]:
        """On the I/O thread: persist every Ready, apply its committed entries and cut the
        logs in ``compactions`` (group -> index) in one transaction, synced once. Touches
        only the store and the (pure) state machine."""
        store = self.store
        assert store is not None
        t0 = time.perf_counter()
        results: dict[int, dict[int, KvResult]] = {}
        batch = WriteBatch()
        for g, rd in writes:
            batch.add_ready(g.group_id, rd)
        with store.write() as txn:
            txn.persist(batch)
            t_apply = time.perf_counter()
            for g, rd in writes:
                if rd.committed_entries:
                    results[g.group_id] = self._apply(txn, g, rd)
            if results:
                self.metrics.apply_seconds.observe(time.perf_counter() - t_apply)
            for gid, index in compactions.items():
                # Compacted: a snapshot was installed past it since; UnknownGroup: dropped.
                with contextlib.suppress(Compacted, UnknownGroup):
                    txn.compact(gid, index)
                    log.debug("group %d: log compacted to %d", gid, index)
        self.metrics.persist_seconds.observe(time.perf_counter() - t0)
        self.metrics.ready_entries.observe(batch.entry_count())
        return results

    def _apply(self, txn: Any, g: GroupReplica, rd: Ready) -> dict[int, KvResult]:
        view = txn.kv_view(g.group_id)
        sm: Any = self.meta_sm if g.group_id == META_GROUP else self.sm
        out: dict[int, Any] = {}
        cs = g.conf_state
        for e in rd.committed_entries:
            if e.type == EntryType.CONF_CHANGE:
                cs = ConfChange.decode(e.data).applied_to(cs)
                txn.set_conf_state(g.group_id, e.index, cs)
            elif e.data:
                out[e.index] = sm.apply(view, e.index, e.data)
        txn.set_applied(g.group_id, rd.committed_entries[-1].index)
        self.metrics.group(g.group_id).applied.inc(len(rd.committed_entries))
        return out

    def _plan_compactions(self) -> None:
        """Note each group whose log is due for compaction (``storage.compaction``); the
        next write transaction cuts it. Compaction only deletes log entries: a snapshot is
        captured from the applied data when a follower needs one."""
        assert self.store is not None
        threshold = self.cfg.snapshot_entries
        for g in self.groups.values():
            first = self.store.group(g.group_id).first_index()
            index = compaction_index(first, g.applied, threshold)
            if index is not None:
                self._compactions[g.group_id] = index

    def _update_gauges(self, g: GroupReplica) -> None:
        gm = self.metrics.group(g.group_id)
        rlog = g.raw.raft.log
        gm.commit_index.set(rlog.committed)
        gm.apply_lag.set(rlog.committed - g.applied)
        gm.is_leader.set(1 if g.is_leader else 0)
        gm.log_first_index.set(rlog.first_index())

    # -- transport callbacks ---------------------------------------------------------------
    def _on_messages(self, from_node: int, msgs: list[tuple[int, Any]]) -> None:
        for gid, m in msgs:
            g = self.groups.get(gid)
            if g is None:
                continue
            try:
                g.raw.step(m)
            except KvClusterError as e:
                log.debug("group %d: dropped message from %d: %s", gid, from_node, e)
        self._wake.set()

    def _on_unreachable(self, node_id: int) -> None:
        for g in self.groups.values():
            g.raw.report_unreachable(node_id)
        self._wake.set()

    # -- helpers for the services ----------------------------------------------------------
    @property
    def accepting(self) -> bool:
        return self._accepting

    def address_of(self, node_id: int) -> str:
        return self.cfg.peers.get(node_id, "")

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def health(self) -> dict[str, Any]:
        groups = []
        for g in self.groups.values():
            raft = g.raw.raft
            groups.append(
                {
                    "group": g.group_id,
                    "role": raft.role.name,
                    "leader": raft.leader_id,
                    "term": raft.term,
                    "commit_index": raft.log.committed,
                    "applied_index": g.applied,
                    "first_index": raft.log.first_index(),
                    "last_index": raft.log.last_index(),
                    "voters": list(g.conf_state.voters),
                }
            )
        healthy = self._accepting and self.meta.bootstrapped and all(gr["leader"] for gr in groups)
        return {
            "node_id": self.cfg.node_id,
            "cluster_id": self.cfg.cluster_id,
            "address": self.cfg.address,
            "healthy": healthy,
            "epoch": self.meta.epoch,
            "groups": groups,
        }
