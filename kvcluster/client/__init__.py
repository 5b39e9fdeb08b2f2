"""The kvcluster client library: ``Client`` (blocking) and ``AsyncClient`` (asyncio).

from kvcluster import Client
with Client("127.0.0.1:7001") as kv:
    kv.set("user:1", "alice")
    kv.get("user:1")          # b"alice"
"""

from kvcluster.client.aio import AsyncClient, AsyncPipeline
from kvcluster.client.sync import Client, Pipeline

__all__ = ["AsyncClient", "AsyncPipeline", "Client", "Pipeline"]
