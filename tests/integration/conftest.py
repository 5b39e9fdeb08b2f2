"""Fixtures for tests that run real node processes on 127.0.0.1 (cleaned up by PID)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from kvcluster.local import LocalCluster
from kvcluster.v1 import kv_pb2, kv_pb2_grpc


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[object]:
    made: list[LocalCluster] = []

    def make(nodes: int = 3, **kw: object) -> LocalCluster:
        c = LocalCluster(nodes, tmp_path / f"cluster{len(made)}", **kw)  # type: ignore[arg-type]
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()
        for node_id, text in c.logs():  # shown by pytest only when the test failed
            print(f"--- node {node_id} log (tail) ---")
            print("\n".join(text.splitlines()[-40:]))


def stale_get_all(address: str, keys: list[bytes]) -> list[bytes | None] | None:
    """Read ``keys`` from one node's local state (STALE), bypassing routing; None if the node
    does not answer (yet)."""
    try:
        return _stale_get_all(address, keys)
    except grpc.RpcError:
        return None


def _stale_get_all(address: str, keys: list[bytes]) -> list[bytes | None]:
    out: list[bytes | None] = []
    with grpc.insecure_channel(address) as ch:
        stub = kv_pb2_grpc.KVStub(ch)
        for i in range(0, len(keys), 500):
            reqs = [
                kv_pb2.Request(op=kv_pb2.GET, key=k, consistency=kv_pb2.STALE)
                for k in keys[i : i + 500]
            ]
            resp = stub.Execute(kv_pb2.BatchRequest(requests=reqs), timeout=30)
            out.extend(
                None if r.status == kv_pb2.NOT_FOUND else bytes(r.value) for r in resp.responses
            )
    return out
