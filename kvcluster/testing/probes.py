"""Probes that tests use to look inside a running cluster, bypassing the client's routing.

Contract: read-only; each call opens its own channel and answers None when the node does not
answer (yet), so callers can wait on it as a condition.
"""

from __future__ import annotations

import grpc

from kvcluster.v1 import kv_pb2, kv_pb2_grpc

__all__ = ["stale_get_all"]


def stale_get_all(
    address: str, keys: list[bytes], timeout: float = 30.0
) -> list[bytes | None] | None:
    """``keys`` as one node's local state holds them (STALE reads, no routing, no leader
    needed), or None if the node does not answer."""
    out: list[bytes | None] = []
    try:
        with grpc.insecure_channel(address) as ch:
            stub = kv_pb2_grpc.KVStub(ch)
            for i in range(0, len(keys), 500):
                reqs = [
                    kv_pb2.Request(op=kv_pb2.GET, key=k, consistency=kv_pb2.STALE)
                    for k in keys[i : i + 500]
                ]
                resp = stub.Execute(kv_pb2.BatchRequest(requests=reqs), timeout=timeout)
                out.extend(
                    None if r.status == kv_pb2.NOT_FOUND else bytes(r.value) for r in resp.responses
                )
    except grpc.RpcError:
        return None
    return out
