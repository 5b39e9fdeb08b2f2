"""BatchStream against a scripted KV server on loopback: answers matched by batch id, out of
order; a timeout or a broken stream is "unknown" (None), and a broken stream stays broken."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from kvcluster.client._stream import NOT_SENT, BatchStream
from kvcluster.v1 import kv_pb2, kv_pb2_grpc


class ScriptedKV(kv_pb2_grpc.KVServicer):
    """Answers each batch with one OK response whose value is the request's key, in the order
    the test releases them: a batch whose key starts with ``hold`` waits for ``release``; a
    key ``abort`` ends the stream with an error."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.received = threading.Semaphore(0)

    def Pipeline(self, request_iterator: Iterator[kv_pb2.BatchRequest], context: Any) -> Any:
        out: list[kv_pb2.BatchResponse] = []
        ready = threading.Condition()
        state = {"done": False, "abort": False}

        def answer(batch: kv_pb2.BatchRequest) -> None:
            key = batch.requests[0].key
            if key.startswith(b"hold"):
                self.release.wait(10)
            resp = kv_pb2.BatchResponse(
                responses=[kv_pb2.Response(status=kv_pb2.OK, value=key)], batch_id=batch.batch_id
            )
            with ready:
                out.append(resp)
                ready.notify()

        def read() -> None:
            try:
                for batch in request_iterator:
                    self.received.release()
                    if batch.requests[0].key == b"abort":
                        with ready:
                            state["abort"] = True
                            ready.notify()
                        return
                    threading.Thread(target=answer, args=(batch,), daemon=True).start()
            except grpc.RpcError:
                pass  # the stream ended under us
            with ready:
                state["done"] = True
                ready.notify()

        threading.Thread(target=read, daemon=True).start()
        while context.is_active():
            with ready:
                ready.wait_for(lambda: bool(out) or state["done"] or state["abort"], 0.05)
                answers, out[:] = list(out), []
                abort, done = state["abort"], state["done"]
            if abort:
                context.abort(grpc.StatusCode.INTERNAL, "scripted failure")
            yield from answers
            if done and not answers:
                return


@pytest.fixture
def server() -> Iterator[tuple[ScriptedKV, kv_pb2_grpc.KVStub]]:
    svc = ScriptedKV()
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    kv_pb2_grpc.add_KVServicer_to_server(svc, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield svc, kv_pb2_grpc.KVStub(ch)
    finally:
        svc.release.set()
        ch.close()
        srv.stop(grace=None)


Opened = tuple[ScriptedKV, kv_pb2_grpc.KVStub, BatchStream]


@pytest.fixture
def opened(server: tuple[ScriptedKV, kv_pb2_grpc.KVStub]) -> Iterator[Opened]:
    """A BatchStream on the scripted server, closed after the test."""
    svc, stub = server
    stream = BatchStream(stub)
    try:
        yield svc, stub, stream
    finally:
        stream.close()


def req(key: bytes) -> kv_pb2.BatchRequest:
    return kv_pb2.BatchRequest(requests=[kv_pb2.Request(op=kv_pb2.GET, key=key)])


def value(r: object) -> bytes:
    assert isinstance(r, kv_pb2.BatchResponse), r
    return bytes(r.responses[0].value)


def test_answers_are_matched_by_batch_id_when_they_come_out_of_order(opened: Opened) -> None:
    svc, _, stream = opened
    held: list[object] = []
    t = threading.Thread(target=lambda: held.append(stream.call(req(b"hold-1"), 10)))
    t.start()
    assert svc.received.acquire(timeout=10)  # the held batch is at the server
    fast = stream.call(req(b"fast"), 10)  # answered while the first is still held
    assert value(fast) == b"fast"
    assert t.is_alive()
    svc.release.set()
    t.join(10)
    assert value(held[0]) == b"hold-1"
    # Many threads at once: each gets its own answer.
    results: dict[int, bytes] = {}

    def one(i: int) -> None:
        results[i] = value(stream.call(req(b"k%d" % i), 10))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(32)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    assert results == {i: b"k%d" % i for i in range(32)}
    assert stream.alive


def test_a_timeout_is_unknown_and_the_late_answer_is_dropped(opened: Opened) -> None:
    svc, _, stream = opened
    assert stream.call(req(b"hold-late"), 0.2) is None  # sent, then no answer in time
    assert svc.received.acquire(timeout=10)
    svc.release.set()  # its answer now arrives, and nobody takes it
    assert value(stream.call(req(b"next"), 10)) == b"next"
    assert stream.alive and stream._waiting == {}


def test_a_broken_stream_releases_its_waiters_and_stays_broken(opened: Opened) -> None:
    svc, stub, stream = opened
    waiting: list[object] = []
    t = threading.Thread(target=lambda: waiting.append(stream.call(req(b"hold-2"), 30)))
    t.start()
    assert svc.received.acquire(timeout=10)
    assert stream.call(req(b"abort"), 30) is None  # the stream ends with an error
    t.join(10)
    assert waiting == [None]  # released by the break, well before its 30 s
    assert not stream.alive
    t0 = time.monotonic()
    assert stream.call(req(b"after"), 30) is NOT_SENT  # broken stays broken
    assert time.monotonic() - t0 < 5  # answered at once, not at its timeout
    fresh = BatchStream(stub)  # the owner opens a new one
    try:
        assert value(fresh.call(req(b"again"), 10)) == b"again"
    finally:
        fresh.close()


def test_a_stream_to_no_server_breaks_at_once() -> None:
    with grpc.insecure_channel("127.0.0.1:1") as ch:
        stream = BatchStream(kv_pb2_grpc.KVStub(ch))
        try:
            t0 = time.monotonic()
            # None (the break released it) or NOT_SENT (broken before it was queued).
            assert stream.call(req(b"k"), 10) in (None, NOT_SENT)
            assert time.monotonic() - t0 < 5  # not its 10 s timeout
            assert not stream.alive
        finally:
            stream.close()


class _Ended(grpc.RpcError):
    pass


class HeldCall:
    """A Pipeline call whose request side nobody takes from until the test does (standing in
    for gRPC's request thread), and whose answers never come until it is cancelled."""

    def __init__(self, requests: Iterator[kv_pb2.BatchRequest]) -> None:
        self.requests = requests
        self._cancelled = threading.Event()

    def __iter__(self) -> HeldCall:
        return self

    def __next__(self) -> kv_pb2.BatchResponse:
        self._cancelled.wait(30)
        raise _Ended()

    def cancel(self) -> None:
        self._cancelled.set()


class HeldStub:
    call: HeldCall

    def Pipeline(self, requests: Iterator[kv_pb2.BatchRequest]) -> HeldCall:
        self.call = HeldCall(requests)
        return self.call


def test_a_batch_that_times_out_before_it_leaves_is_dropped_and_not_sent() -> None:
    stub = HeldStub()
    stream = BatchStream(stub)  # type: ignore[arg-type]
    try:
        assert stream.call(req(b"never"), 0.1) is NOT_SENT  # nobody took it in time
        got: list[object] = []
        t = threading.Thread(target=lambda: got.append(stream.call(req(b"later"), 10)))
        t.start()
        # gRPC's thread now takes the next batch to send: the dropped one is skipped.
        sent = next(stub.call.requests)
        assert sent.requests[0].key == b"later"
    finally:
        stream.close()
    t.join(10)
    assert got == [None]  # it was sent, then the stream ended unanswered: unknown
