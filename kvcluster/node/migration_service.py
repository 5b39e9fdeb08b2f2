"""The Migration gRPC service: the steps a slot-migration executor takes, one RPC each.

Contract:
- ``Propose`` appends one command to a group's log on its leader and answers once it is
  applied: a meta command (group 0, JSON, checked with ``decode_meta_command``) or a
  slot-move command (shard group, checked with ``decode_command``; any other kv command is
  refused — clients write through the KV service). The leader stamps the command's
  ``now_ms``. Not the leader: ``not_leader`` with a hint. Still pending at the deadline:
  ``unknown`` (the step may or may not have happened; every step is idempotent, so the
  executor retries it). The clock a command applies with is the leader's, or the
  command's own ``now_ms`` if later (an import chunk carries the source's clock) but never
  more than a minute ahead of the leader's. An import chunk holding a key of another slot
  is refused whole (the batch with it): stored under the wrong slot, such a key could be
  neither found nor moved again.
- ``MetaState`` is a linearizable read of the layout on the meta leader (ReadIndex).
- ``ScanSlot`` is a linearizable read on a shard group's leader: a page of the slot's data,
  of its dirty keys with their current values, or of the sessions whose last write was in
  it; always with the slot's record and the group's clock. Keys expired at the clock are
  left out (DATA) or reported absent (DIRTY).
"""

from __future__ import annotations

import asyncio
import struct
from typing import TYPE_CHECKING, Any

from kvcluster.errors import InvalidArgument, KvClusterError, NotLeader, ProposalDropped
from kvcluster.kv import sessions
from kvcluster.kv.commands import decode_command, encode_command
from kvcluster.kv.result import Status
from kvcluster.kv.slot_moves import (
    DIRTY_BASE,
    SLOT_PREFIX,
    Activate,
    Freeze,
    ImportChunk,
    MoveCommand,
)
from kvcluster.kv.values import is_expired
from kvcluster.meta import META_GROUP, MetaResult, decode_meta_command
from kvcluster.sharding import key_slot
from kvcluster.v1 import admin_pb2, admin_pb2_grpc

if TYPE_CHECKING:
    from kvcluster.node.group import GroupReplica
    from kvcluster.node.node import Node

__all__ = ["MigrationService"]

_U64 = struct.Struct(">Q")
_SLOT = struct.Struct(">H")
_MAX_SCAN = 1000
_MAX_COMMANDS = 1000
_MOVE_MODULE = "kvcluster.kv.slot_moves"


class MigrationService(admin_pb2_grpc.MigrationServicer):
    def __init__(self, node: Node) -> None:
        self.node = node

    def _hint(self, g: GroupReplica | None) -> dict[str, Any]:
        leader = g.leader_id if g is not None else 0
        return {
            "not_leader": True,
            "leader_id": leader,
            "leader_address": self.node.address_of(leader) if leader else "",
        }

    async def Propose(
        self, request: admin_pb2.ProposeRequest, context: Any
    ) -> admin_pb2.ProposeResponse:
        node = self.node
        gid = request.group_id
        g = node.groups.get(gid)
        if not request.commands or len(request.commands) > _MAX_COMMANDS:
            return admin_pb2.ProposeResponse(error=f"give 1..{_MAX_COMMANDS} commands")
        try:
            checked = [self._checked(gid, c) for c in request.commands]
        except InvalidArgument as e:
            return admin_pb2.ProposeResponse(error=str(e))
        if g is None:
            return admin_pb2.ProposeResponse(
                error=f"group {gid} is not hosted here", **self._hint(g)
            )
        if not node.accepting:
            return admin_pb2.ProposeResponse(error="node is shutting down", unknown=True)
        try:
            futs = g.propose([data for data, _, _ in checked])
        except ProposalDropped as e:  # NotLeader included
            return admin_pb2.ProposeResponse(error=str(e), **self._hint(g))
        # Client writes held for slots being activated may now be proposed (they land behind
        # the Activate); requests for slots being frozen may go to the target at once.
        first = g.raw.raft.log.last_index() - len(checked) + 1
        g.note_moves(
            [(slot, first + k) for k, (_, slot, kind) in enumerate(checked) if kind is Activate],
            [(slot, first + k) for k, (_, slot, kind) in enumerate(checked) if kind is Freeze],
        )
        node.kick()
        try:
            results = await asyncio.wait_for(
                asyncio.shield(asyncio.gather(*futs)), node.cfg.request_timeout_ms / 1000
            )
        except TimeoutError:
            for f in futs:
                g.forget_write(f)
            return admin_pb2.ProposeResponse(error="timed out", unknown=True)
        except ProposalDropped as e:
            return admin_pb2.ProposeResponse(error=str(e), **self._hint(g))
        except KvClusterError as e:
            return admin_pb2.ProposeResponse(error=str(e), unknown=True)
        resp = admin_pb2.ProposeResponse()
        for r in results:
            if isinstance(r, MetaResult):
                resp.results.add(ok=r.ok, error=r.error)
                resp.epoch = max(resp.epoch, r.epoch)
            else:
                resp.results.add(
                    ok=r.status == Status.OK, error=r.error, int_value=r.int_value, value=r.value
                )
        return resp

    def _checked(self, gid: int, command: bytes) -> tuple[bytes, int, type | None]:
        """The entry to propose for ``command``, its slot and its type (a slot-move
        command's; -1 and None for a meta command); InvalidArgument unless it is allowed
        here."""
        if gid == META_GROUP:
            decode_meta_command(command)
            return command, -1, None
        cmd = decode_command(command)
        if type(cmd).__module__ != _MOVE_MODULE:
            raise InvalidArgument("only slot-move commands may be proposed here")
        move: MoveCommand = cmd  # type: ignore[assignment]
        if isinstance(move, ImportChunk):
            stray = next((k for k, _ in move.puts if key_slot(k) != move.slot), None)
            if stray is not None:
                raise InvalidArgument(
                    f"an import chunk for slot {move.slot} holds key {stray[:64]!r}, "
                    f"which is in slot {key_slot(stray)}"
                )
        # The leader stamps its clock; an import chunk may carry the source group's clock (so
        # a key expired there is expired here), at most a minute ahead.
        now = self.node.now_ms()
        stamped = move._replace(now_ms=max(now, min(move.now_ms, now + 60_000)))
        return encode_command(stamped), move.slot, type(move)

    async def _barrier(self, g: GroupReplica) -> None:
        index = await asyncio.wait_for(g.read_barrier(), self.node.cfg.request_timeout_ms / 1000)
        await asyncio.wait_for(g.wait_applied(index), self.node.cfg.request_timeout_ms / 1000)

    async def MetaState(
        self, request: admin_pb2.MetaStateRequest, context: Any
    ) -> admin_pb2.MetaStateResponse:
        node = self.node
        g = node.groups[META_GROUP]
        self.node.kick()
        try:
            await self._barrier(g)
        except NotLeader:
            return admin_pb2.MetaStateResponse(error="not the meta leader", **self._hint(g))
        except (TimeoutError, KvClusterError) as e:
            return admin_pb2.MetaStateResponse(error=f"unavailable: {e!r}")
        assert node.store is not None
        with node.store.read() as txn:
            state = node.meta_sm.load_full(txn.kv_read_view(META_GROUP))
        return admin_pb2.MetaStateResponse(state=state.encode())

    async def ScanSlots(
        self, request: admin_pb2.ScanSlotsRequest, context: Any
    ) -> admin_pb2.ScanSlotsResponse:
        node = self.node
        g = node.groups.get(request.group_id)
        if g is None or request.group_id == META_GROUP:
            return admin_pb2.ScanSlotsResponse(
                error=f"shard group {request.group_id} is not hosted here", **self._hint(None)
            )
        slots = list(request.slots)
        if not slots or any(not 0 <= s < DIRTY_BASE for s in slots):
            return admin_pb2.ScanSlotsResponse(error="give slots in 0..16383")
        node.kick()
        try:
            await self._barrier(g)
        except NotLeader:
            return admin_pb2.ScanSlotsResponse(error="not the leader", **self._hint(g))
        except (TimeoutError, KvClusterError) as e:
            return admin_pb2.ScanSlotsResponse(error=f"unavailable: {e!r}")
        assert node.store is not None
        with node.store.read() as txn:
            view = txn.kv_read_view(g.group_id)
            return _scan(view, node.sm.clock(view), request, slots)


def _scan(
    view: Any, clock: int, request: admin_pb2.ScanSlotsRequest, slots: list[int]
) -> admin_pb2.ScanSlotsResponse:
    """One page of a multi-slot scan from a read view (see ``ScanSlots``)."""
    resp = admin_pb2.ScanSlotsResponse(clock=clock, done=True)
    resp.records.extend(view.get_meta(SLOT_PREFIX + _SLOT.pack(s)) or b"" for s in slots)
    kind = request.kind
    if kind == admin_pb2.SIZES:
        for s in slots:
            keys = size = 0
            cursor: bytes | None = None
            while page := view.scan(s, cursor, _MAX_SCAN):  # a page at a time, not the slot
                keys += len(page)
                size += sum(len(k) + len(v) for k, v in page)
                cursor = page[-1][0]
            resp.keys_totals.append(keys)
            resp.bytes_totals.append(size)
        return resp
    if kind == admin_pb2.SESSIONS:
        for s in slots:
            for client_id, seq, record in sessions.sessions_in_slot(view, s, 1 << 62):
                resp.keys.append(_U64.pack(client_id))
                resp.values.append(record)
                resp.seqs.append(seq)
                resp.entry_slots.append(s)
        return resp
    limit = min(request.limit or _MAX_SCAN, _MAX_SCAN)
    first = slots.index(request.start_slot) if request.start_slot in slots else 0
    after: bytes | None = request.start_after if request.has_start_after else None
    room = limit
    for i in range(first, len(slots)):
        slot = slots[i]
        shadow = slot if kind == admin_pb2.DATA else DIRTY_BASE + slot
        page = view.scan(shadow, after if i == first else None, room)
        for key, raw in page:
            if kind == admin_pb2.DATA:
                if is_expired(raw, clock):
                    continue
                value, live = raw, True
            else:
                current = view.get(slot, key)
                live = current is not None and not is_expired(current, clock)
                value = current if live and current is not None else b""
            resp.entry_slots.append(slot)
            resp.keys.append(key)
            resp.values.append(value)
            resp.present.append(live)
        room -= len(page)
        if room <= 0:  # the page is full: resume after the last key scanned (expired or not)
            resp.done = False
            resp.next_slot = slot
            resp.next_after = page[-1][0]
            resp.has_next_after = True
            return resp
    return resp
