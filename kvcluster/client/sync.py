"""The synchronous cluster client (grpc, blocking).

Contract: ``Client(seeds)`` routes each key by its slot using a cached slot map, follows
MOVED / ASK / leader redirects / TRYAGAIN through the pure decisions of
``kvcluster.sharding.retry`` within a retry budget, and raises typed errors from
``kvcluster.errors``. Writes carry a session so a retried write is applied once. Thread-safe.
A redirect that names its target is followed at once; the slot map refresh it calls for
runs on a background thread meanwhile (one at a time). Requests travel on one open
``KV/Pipeline`` stream per node, shared by the client's threads (``_stream.BatchStream``:
far less CPU on the node than a unary call each). Each refresh opens the streams to the
group leaders the map names (``_connect_ahead``), so a redirect finds its connection open.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc

from kvcluster.client import _protocol as p
from kvcluster.client._api import ClientBase, Commands, combine_results
from kvcluster.client._routing import decode_slot_map
from kvcluster.client._stream import BatchStream, NotSent
from kvcluster.errors import (
    InvalidArgument,
    KvClusterError,
)
from kvcluster.sharding.retry import (
    Unreachable,
)
from kvcluster.v1 import admin_pb2, admin_pb2_grpc, kv_pb2, kv_pb2_grpc

__all__ = ["CHANNEL_OPTIONS", "Client", "Pipeline"]

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
    # A connection that went dead without a word (a partition, a host gone) is found within
    # ~15 s even while idle: its request stream then breaks, and what it still held is
    # dropped rather than delivered whenever the network heals (the nodes accept a ping
    # every 5 s, ``transport.SERVER_OPTIONS``).
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]


STREAM_MAX_BATCH_BYTES = 64 << 10
"""A batch bigger than this (encoded) goes in a unary call of its own, not on the stream."""


class _Closed(Exception):
    """The client was closed: nothing may be opened or sent any more."""


class Client(ClientBase):
    def _init_transport(self) -> None:
        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}
        self._streams: dict[str, BatchStream] = {}
        self._refresher: threading.Thread | None = None
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Close every stream and connection. Calls made afterwards raise InvalidArgument;
        calls still running get no answer from here on (their outcome as the retry rules
        say: unknown if an attempt may have been applied)."""
        with self._lock:
            self._closed = True
            refresher, self._refresher = self._refresher, None
        if refresher is not None:
            refresher.join()  # one RPC with a deadline
        with self._lock:
            streams, self._streams = self._streams, {}
            channels, self._channels = self._channels, {}
        for stream in streams.values():
            stream.close()
        for ch in channels.values():
            ch.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pipeline(self) -> Pipeline:
        return Pipeline(self)

    # -- transport -------------------------------------------------------------------------
    def _channel(self, addr: str) -> grpc.Channel:
        with self._lock:
            return self._channel_locked(addr)

    def _channel_locked(self, addr: str) -> grpc.Channel:
        if self._closed:
            raise _Closed
        ch = self._channels.get(addr)
        if ch is None:
            ch = grpc.insecure_channel(self._dial.get(addr, addr), options=CHANNEL_OPTIONS)
            self._channels[addr] = ch
        return ch

    def _stream(self, addr: str) -> BatchStream:
        """The open request stream to ``addr`` (a new one if there is none or it broke)."""
        with self._lock:
            stream = self._streams.get(addr)
            if stream is None or not stream.alive:
                stub = kv_pb2_grpc.KVStub(self._channel_locked(addr))
                stream = self._streams[addr] = BatchStream(stub)
            return stream

    def _send(self, addr: str, reqs: list[kv_pb2.Request]) -> list[kv_pb2.Response] | Unreachable:
        batch = kv_pb2.BatchRequest(requests=reqs)
        resp: kv_pb2.BatchResponse | NotSent | None
        try:
            if batch.ByteSize() > STREAM_MAX_BATCH_BYTES:
                resp = self._send_unary(addr, batch)
            else:
                resp = self._stream(addr).call(batch, self._timeout)
        except _Closed:
            return Unreachable(addr, maybe_sent=False)
        if isinstance(resp, NotSent):
            return Unreachable(addr, maybe_sent=False)
        if resp is None or len(resp.responses) != len(reqs):
            # Timed out or the stream broke: it may have been applied (``BatchStream``).
            return Unreachable(addr, maybe_sent=True)
        return list(resp.responses)

    def _send_unary(self, addr: str, batch: kv_pb2.BatchRequest) -> kv_pb2.BatchResponse | None:
        """A big batch goes in a call of its own: on the shared stream it would hold up
        every other thread's requests while it is written. None: it may have arrived."""
        stub = kv_pb2_grpc.KVStub(self._channel(addr))
        try:
            resp: kv_pb2.BatchResponse = stub.Execute(batch, timeout=self._timeout)
        except grpc.RpcError:
            return None
        return resp

    def refresh_slots(self) -> bool:
        """Fetch the slot map from any reachable node; returns whether one answered (never,
        once the client is closed)."""
        try:
            return self._refresh_slots()
        except _Closed:
            return False

    def _refresh_slots(self) -> bool:
        for addr in self._cache.addresses():
            ch = self._channel(addr)
            try:
                r = admin_pb2_grpc.ClusterInfoStub(ch).ClusterSlots(
                    admin_pb2.ClusterSlotsRequest(), timeout=min(self._timeout, 2.0)
                )
            except grpc.RpcError:
                continue
            with self._lock:
                self._cache.replace(decode_slot_map(r.slot_map))
                self._refreshed = True
                leaders = self._cache.leaders()
            self._connect_ahead(leaders)
            return True
        return False

    def _connect_ahead(self, addresses: list[str]) -> None:
        """Open the request stream to each of ``addresses`` that has none, without waiting:
        a MOVED or ASK to a group's leader then finds its connection open (a new one costs
        a TCP and HTTP/2 handshake on the request's path)."""
        for addr in addresses:
            self._stream(addr)  # opening the stream opens the connection (_Closed: stop)

    def _refresh_soon(self) -> None:
        """Refresh the slot map on a background thread, unless one is at it already."""
        with self._lock:
            if self._closed or (self._refresher is not None and self._refresher.is_alive()):
                return
            self._refresher = threading.Thread(
                target=self.refresh_slots, name="kvcluster-refresh", daemon=True
            )
            self._refresher.start()

    # -- the retry loop (the pure decisions live in sharding.retry) --------------------------
    def _dispatch(self, cmds: list[p.Command], combine: Any) -> Any:
        return combine(self._execute(cmds))

    def _execute(self, cmds: list[p.Command], raise_on_error: bool = True) -> list[Any]:
        if self._closed:
            raise InvalidArgument("the client is closed")
        if not self._refreshed:
            self.refresh_slots()
        sessions = self._open_sessions(cmds)
        try:
            # First attempt: one batch per target node; stragglers go through the loop.
            by_target = self._by_target(cmds)
            first: list[tuple[str, kv_pb2.Response | Unreachable] | None] = [None] * len(cmds)
            for addr, idx in by_target.items():
                out = self._send(addr, [cmds[i].request for i in idx])
                for j, i in enumerate(idx):
                    first[i] = (addr, out if isinstance(out, Unreachable) else out[j])
            results: list[Any] = []
            for c, f in zip(cmds, first, strict=True):
                try:
                    results.append(self._finish(c, f))
                except KvClusterError as e:
                    if raise_on_error:
                        raise
                    results.append(e)
            return results
        finally:
            self._close_sessions(sessions)

    def _finish(
        self, cmd: p.Command, pending: tuple[str, kv_pb2.Response | Unreachable] | None
    ) -> Any:
        attempts = p.Attempts(cmd, self._cache, self._budget, self._lock)
        while True:
            if pending is None:
                addr = attempts.next_address()
                out = self._send(addr, [cmd.request])
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
                    self._refresh_soon()
                else:
                    self.refresh_slots()
            if action.backoff_ticks:
                time.sleep(action.backoff_ticks * self._tick)


class Pipeline(Commands):
    """Buffer commands; ``execute()`` sends them (one batch per node) and returns the results
    in order. Like redis-py's cluster pipeline it is not a transaction: each command is
    applied on its own, and commands on different groups are not atomic together."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._stale = client._stale
        self._queued: list[tuple[list[p.Command], Any]] = []

    def _dispatch(self, cmds: list[p.Command], combine: Any) -> Any:
        self._queued.append((cmds, combine))
        return self

    def __len__(self) -> int:
        return len(self._queued)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        queued, self._queued = self._queued, []
        flat = [c for cmds, _ in queued for c in cmds]
        if not flat:
            return []
        return combine_results(queued, self._client._execute(flat, raise_on_error))

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self._queued.clear()
