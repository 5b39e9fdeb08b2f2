"""kvcluster — a Raft-replicated, hash-slot-sharded key-value store.

    from kvcluster import Client
    with Client("127.0.0.1:7001,127.0.0.1:7002") as kv:
        kv.set("user:1", "alice")
        assert kv.get("user:1") == b"alice"

The client classes are imported lazily, so that importing the pure layers
(``kvcluster.raft``, ``kvcluster.sharding``) never loads grpc or asyncio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["AsyncClient", "AsyncPipeline", "Client", "Pipeline", "__version__"]

if TYPE_CHECKING:
    from kvcluster.client import AsyncClient, AsyncPipeline, Client, Pipeline


def __getattr__(name: str) -> Any:
    if name in ("AsyncClient", "AsyncPipeline", "Client", "Pipeline"):
        from kvcluster import client

        return getattr(client, name)
    raise AttributeError(f"module 'kvcluster' has no attribute {name!r}")
