"""KV/Pipeline on the node: batches answered as they complete, a failed batch answered on
its own (outcome unknown) while the others go on, and a client that goes away cancels its
batches still running (the node's batch execution is replaced by a scripted one)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from kvcluster.node.services import KvService
from kvcluster.v1 import kv_pb2


class Scripted:
    """Stands in for ``KvService._execute``: batch ``i`` waits for ``gates[i]`` if there is
    one; a batch id of 99 fails."""

    def __init__(self) -> None:
        self.gates: dict[int, asyncio.Event] = {}
        self.cancelled: list[int] = []
        self.any_cancelled = asyncio.Event()

    async def __call__(self, batch: kv_pb2.BatchRequest) -> kv_pb2.BatchResponse:
        try:
            if batch.batch_id in self.gates:
                await self.gates[batch.batch_id].wait()
        except asyncio.CancelledError:
            self.cancelled.append(batch.batch_id)
            self.any_cancelled.set()
            raise
        if batch.batch_id == 99:
            raise RuntimeError("scripted failure")
        return kv_pb2.BatchResponse(batch_id=batch.batch_id)


def service(script: Scripted) -> KvService:
    svc = KvService(node=None)  # type: ignore[arg-type]  # Pipeline only calls _execute
    svc._execute = script  # type: ignore[method-assign]
    return svc


async def requests(*ids: int, then: asyncio.Event | None = None) -> AsyncIterator[Any]:
    for i in ids:
        yield kv_pb2.BatchRequest(batch_id=i, requests=[kv_pb2.Request(op=kv_pb2.GET, key=b"k")])
    if then is not None:
        await then.wait()  # the client keeps its side of the stream open


def test_batches_are_answered_as_they_complete() -> None:
    async def main() -> list[int]:
        script = Scripted()
        script.gates[1] = asyncio.Event()
        stream = service(script).Pipeline(requests(1, 2, 3), None)
        got = [(await asyncio.wait_for(anext(stream), 5)).batch_id for _ in range(2)]
        script.gates[1].set()  # the slow first batch completes last
        got += [r.batch_id async for r in stream]
        return got

    got = asyncio.run(main())
    assert sorted(got[:2]) == [2, 3] and got[2:] == [1]


def test_a_failed_batch_is_answered_unknown_and_the_others_go_on() -> None:
    """The stream is shared by many callers: one batch failing must not end it."""

    async def main() -> list[kv_pb2.BatchResponse]:
        script = Scripted()
        script.gates[5] = asyncio.Event()
        stream = service(script).Pipeline(requests(99, 5), None)
        first = await asyncio.wait_for(anext(stream), 5)
        script.gates[5].set()
        return [first] + [r async for r in stream]

    failed, ok = asyncio.run(main())
    assert failed.batch_id == 99 and ok.batch_id == 5
    assert [r.status for r in failed.responses] == [kv_pb2.TIMEOUT]  # its one request
    assert "outcome unknown" in failed.responses[0].error


def test_a_client_that_goes_away_cancels_its_running_batches() -> None:
    async def main() -> list[int]:
        script = Scripted()
        script.gates[7] = asyncio.Event()  # never set: batch 7 is still running
        open_side = asyncio.Event()
        stream = service(script).Pipeline(requests(6, 7, then=open_side), None)
        first = await asyncio.wait_for(anext(stream), 5)
        assert first.batch_id == 6
        await stream.aclose()  # what gRPC does when the call is cancelled
        await asyncio.wait_for(script.any_cancelled.wait(), 5)
        return script.cancelled

    assert asyncio.run(main()) == [7]
