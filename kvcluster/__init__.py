"""kvcluster — a Raft-replicated, hash-slot-sharded key-value store.

from kvcluster import Client
with Client("127.0.0.1:7001,127.0.0.1:7002") as kv:
    kv.set("user:1", "alice")
    assert kv.get("user:1") == b"alice"
"""

from kvcluster.client import AsyncClient, AsyncPipeline, Client, Pipeline

__version__ = "0.1.0"

__all__ = ["AsyncClient", "AsyncPipeline", "Client", "Pipeline", "__version__"]
