"""The asyncio cluster client (grpc.aio).

Contract: the same behaviour as ``kvcluster.client.sync.Client`` — the same routing cache,
sessions and pure retry decisions; only the short send/wait loop is written again, with
``await``. Safe to share between tasks of one event loop; every public method is a coroutine.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import grpc

from kvcluster.client import _protocol as p
from kvcluster.client._api import ClientBase, Commands, combine_results
from kvcluster.client._routing import decode_slot_map
from kvcluster.client.sync import CHANNEL_OPTIONS
from kvcluster.sharding.retry import Unreachable
from kvcluster.v1 import admin_pb2, admin_pb2_grpc, kv_pb2, kv_pb2_grpc

__all__ = ["AsyncClient", "AsyncPipeline"]


class AsyncClient(ClientBase):
    def _init_transport(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, kv_pb2_grpc.KVStub] = {}
        self._batches: dict[str, _Batch] = {}
        self._inflight: set[asyncio.Future[Any]] = set()
        self._refresher: asyncio.Task[bool] | None = None

    async def close(self) -> None:
        if self._refresher is not None:
            with contextlib.suppress(Exception):
                await self._refresher  # one RPC with a deadline
            self._refresher = None
        channels, self._channels = self._channels, {}
        self._stubs.clear()
        for ch in channels.values():
            await ch.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def pipeline(self) -> AsyncPipeline:
        return AsyncPipeline(self)

    def _channel(self, addr: str) -> grpc.aio.Channel:
        ch = self._channels.get(addr)
        if ch is None:
            ch = grpc.aio.insecure_channel(self._dial.get(addr, addr), options=CHANNEL_OPTIONS)
            self._channels[addr] = ch
            self._stubs[addr] = kv_pb2_grpc.KVStub(ch)
        return ch

    async def _send(
        self, addr: str, reqs: list[kv_pb2.Request]
    ) -> list[kv_pb2.Response] | Unreachable:
        """Send ``reqs`` to ``addr``. Requests sent to one address during one event loop turn
        — by any number of tasks — are coalesced into one Execute RPC (auto-batching), so
        C concurrent callers cost one round trip per turn, not C."""
        batch = self._batches.get(addr)
        if batch is None:
            batch = self._batches[addr] = _Batch()
            asyncio.get_running_loop().call_soon(self._flush, addr)
        start = len(batch.requests)
        batch.requests.extend(reqs)
        out = await asyncio.shield(batch.done)
        if isinstance(out, Unreachable):
            return out
        return out[start : start + len(reqs)]

    def _flush(self, addr: str) -> None:
        batch = self._batches.pop(addr)
        task = asyncio.ensure_future(self._rpc(addr, batch.requests))
        task.add_done_callback(lambda t: batch.done.set_result(t.result()))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _rpc(
        self, addr: str, reqs: list[kv_pb2.Request]
    ) -> list[kv_pb2.Response] | Unreachable:
        self._channel(addr)
        try:
            resp = await self._stubs[addr].Execute(
                kv_pb2.BatchRequest(requests=reqs), timeout=self._timeout
            )
        except grpc.RpcError:
            return Unreachable(addr, maybe_sent=True)
        except asyncio.CancelledError:
            return Unreachable(addr, maybe_sent=True)
        if len(resp.responses) != len(reqs):
            return Unreachable(addr, maybe_sent=True)
        return list(resp.responses)

    async def refresh_slots(self) -> bool:
        for addr in self._cache.addresses():
            stub = admin_pb2_grpc.ClusterInfoStub(self._channel(addr))
            try:
                r = await stub.ClusterSlots(
                    admin_pb2.ClusterSlotsRequest(), timeout=min(self._timeout, 2.0)
                )
            except grpc.RpcError:
                continue
            self._cache.replace(decode_slot_map(r.slot_map))
            self._refreshed = True
            self._connect_ahead(self._cache.leaders())
            return True
        return False

    def _connect_ahead(self, addresses: list[str]) -> None:
        """Start connecting to ``addresses`` we have no channel to yet, without waiting: a
        MOVED or ASK to a group's leader then finds its connection open (a new one costs
        a TCP and HTTP/2 handshake on the request's path)."""
        for addr in addresses:
            if addr not in self._channels:
                self._channel(addr).get_state(try_to_connect=True)

    def _dispatch(self, cmds: list[p.Command], combine: Any) -> Any:
        async def run() -> Any:
            return combine(await self._execute(cmds))

        return run()

    async def _execute(self, cmds: list[p.Command], raise_on_error: bool = True) -> list[Any]:
        if not self._refreshed:
            await self.refresh_slots()
        sessions = self._open_sessions(cmds)
        try:
            by_target = self._by_target(cmds)
            first: list[tuple[str, kv_pb2.Response | Unreachable] | None] = [None] * len(cmds)
            sends = [self._send(a, [cmds[i].request for i in idx]) for a, idx in by_target.items()]
            for (addr, idx), out in zip(
                by_target.items(), await asyncio.gather(*sends), strict=True
            ):
                for j, i in enumerate(idx):
                    first[i] = (addr, out if isinstance(out, Unreachable) else out[j])
            results = await asyncio.gather(
                *(self._finish(c, f) for c, f in zip(cmds, first, strict=True)),
                return_exceptions=not raise_on_error,
            )
            return list(results)
        finally:
            self._close_sessions(sessions)

    async def _finish(
        self, cmd: p.Command, pending: tuple[str, kv_pb2.Response | Unreachable] | None
    ) -> Any:
        attempts = p.Attempts(cmd, self._cache, self._budget, None)
        while True:
            if pending is None:
                addr = attempts.next_address()
                out = await self._send(addr, [cmd.request])
                outcome: kv_pb2.Response | Unreachable = (
                    out if isinstance(out, Unreachable) else out[0]
                )
            else:
                addr, outcome = pending
                pending = None
            action = attempts.record(addr, outcome)
            if action is None:
                return cmd.decode(outcome)  # type: ignore[arg-type]
            if action.refresh_map:
                if action.target is not None:  # the retry knows where to go: don't wait
                    if self._refresher is None or self._refresher.done():
                        self._refresher = asyncio.create_task(self.refresh_slots())
                else:
                    await self.refresh_slots()
            if action.backoff_ticks:
                await asyncio.sleep(action.backoff_ticks * self._tick)


class _Batch:
    """Requests bound for one address in this loop turn, and the future of their RPC."""

    __slots__ = ("done", "requests")

    def __init__(self) -> None:
        self.requests: list[kv_pb2.Request] = []
        self.done: asyncio.Future[list[kv_pb2.Response] | Unreachable] = (
            asyncio.get_running_loop().create_future()
        )


class AsyncPipeline(Commands):
    """The asyncio twin of ``sync.Pipeline``: queue commands, ``await execute()``."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._stale = client._stale
        self._queued: list[tuple[list[p.Command], Any]] = []

    def _dispatch(self, cmds: list[p.Command], combine: Any) -> Any:
        self._queued.append((cmds, combine))
        return self

    def __len__(self) -> int:
        return len(self._queued)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        queued, self._queued = self._queued, []
        flat = [c for cmds, _ in queued for c in cmds]
        if not flat:
            return []
        values = await self._client._execute(flat, raise_on_error)
        return combine_results(queued, values)
