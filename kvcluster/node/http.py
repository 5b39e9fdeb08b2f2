"""HTTP admin endpoints of a node: ``GET /health`` (JSON) and ``GET /metrics`` (Prometheus).

Contract: read-only, served by aiohttp on the node's event loop; never blocks the loop.
``/health`` answers 200 when every hosted group knows a leader, 503 otherwise, with the
per-group role, leader, term, commit and applied index in the body either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from kvcluster.node.config import parse_address
from kvcluster.node.metrics import NodeMetrics

__all__ = ["AdminHttp"]


class AdminHttp:
    def __init__(
        self, address: str, health: Callable[[], dict[str, Any]], metrics: NodeMetrics
    ) -> None:
        self._host, self._port = parse_address(address, "http")
        self._health = health
        self._metrics = metrics
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self._get_health)
        app.router.add_get("/metrics", self._get_metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _get_health(self, request: web.Request) -> web.Response:
        body = self._health()
        status = 200 if body.get("healthy") else 503
        return web.json_response(body, status=status)

    async def _get_metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self._metrics.render(), content_type="text/plain", charset="utf-8")
