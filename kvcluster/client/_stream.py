"""One ``KV/Pipeline`` stream to one node, shared by every thread of a synchronous client.

Contract:
- ``BatchStream(stub)`` opens the stream at once (so it also opens the connection).
  ``call(batch, timeout)`` sends one ``BatchRequest`` on it, tagged with a ``batch_id`` of
  its own, and waits for the ``BatchResponse`` with that id; the node answers batches as
  they complete, so a slow write does not hold up a read behind it.
- ``call`` returns ``NOT_SENT`` when the batch certainly did not happen: the stream was
  broken before it was queued, or its wait timed out before gRPC took it (it is then
  dropped, never sent). It returns None when it cannot tell: the wait timed out after the
  batch was handed to gRPC, or the stream broke before the answer came. As with a failed
  unary call, such a batch may have been applied, or may still be: one still on its way is
  applied when it arrives (while the connection lives; a dead one is found by the channel's
  keepalive, ``sync.CHANNEL_OPTIONS``). The caller retries with the same sessions (applied
  once) or reports the outcome as unknown. A late answer is dropped.
- A broken stream stays broken (``alive`` is False) and answers every ``call`` with
  ``NOT_SENT`` at once; the owner opens a new one. Every waiter of a stream that breaks is
  released (with None: what it sent may have arrived).
- Why: a unary RPC costs the node's gRPC server about 0.3 ms of CPU, a message on an open
  stream a fraction of that (``scripts/bench_client_stream.py``); under load that CPU is the
  cluster's throughput. The owner sends big batches as unary calls instead: on the shared
  stream one would hold up everyone's requests while it is written.
- Threads: gRPC's own thread takes the requests from a queue; one reader thread per stream
  hands out the answers. ``close()`` ends both; it does not wait for pending calls (there
  should be none: the client is closing).
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Iterator

import grpc

from kvcluster.v1 import kv_pb2, kv_pb2_grpc

__all__ = ["NOT_SENT", "BatchStream"]


class NotSent:
    """``call``'s answer for a batch that certainly did not happen."""

    def __repr__(self) -> str:
        return "NOT_SENT"


NOT_SENT = NotSent()


class _Waiter:
    __slots__ = ("done", "response", "sent")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.response: kv_pb2.BatchResponse | None = None
        self.sent = False  # handed to gRPC (set under the stream's lock)


class BatchStream:
    def __init__(self, stub: kv_pb2_grpc.KVStub) -> None:
        self._queue: queue.SimpleQueue[kv_pb2.BatchRequest | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._waiting: dict[int, _Waiter] = {}
        self._ids = itertools.count(1)
        self._broken = False
        self._call = stub.Pipeline(self._requests())
        self._reader = threading.Thread(target=self._read, name="kvcluster-stream", daemon=True)
        self._reader.start()

    @property
    def alive(self) -> bool:
        return not self._broken

    def call(
        self, batch: kv_pb2.BatchRequest, timeout: float
    ) -> kv_pb2.BatchResponse | NotSent | None:
        """Send ``batch`` (its ``batch_id`` is set here) and wait for its answer."""
        waiter = _Waiter()
        with self._lock:
            if self._broken:
                return NOT_SENT
            batch_id = next(self._ids)
            self._waiting[batch_id] = waiter
        batch.batch_id = batch_id
        self._queue.put(batch)
        if waiter.done.wait(timeout):
            return waiter.response
        with self._lock:
            self._waiting.pop(batch_id, None)
            sent = waiter.sent
        if waiter.done.is_set():  # answered (or released) just now
            return waiter.response
        return None if sent else NOT_SENT

    def close(self) -> None:
        self._queue.put(None)  # ends the request stream
        self._call.cancel()
        self._reader.join(timeout=5)

    def _requests(self) -> Iterator[kv_pb2.BatchRequest]:
        while (batch := self._queue.get()) is not None:
            with self._lock:
                waiter = self._waiting.get(batch.batch_id)
                if waiter is None:
                    continue  # its caller gave up before it left: dropped (NOT_SENT)
                waiter.sent = True
            yield batch

    def _read(self) -> None:
        try:
            for response in self._call:
                with self._lock:
                    waiter = self._waiting.pop(response.batch_id, None)
                if waiter is not None:
                    waiter.response = response
                    waiter.done.set()
        except grpc.RpcError:
            pass  # broken: below
        finally:
            with self._lock:
                self._broken = True
                waiting, self._waiting = self._waiting, {}
            self._queue.put(None)  # lets gRPC's request thread finish
            for waiter in waiting.values():
                waiter.done.set()  # response None: outcome unknown
