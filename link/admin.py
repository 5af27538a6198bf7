"""The admin HTTP server: liveness, readiness, Prometheus metrics, and routes plug-ins add."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from link import metrics

if TYPE_CHECKING:
    from link.app import LinkApp


def build_admin_app(app: LinkApp) -> Starlette:
    """The admin ASGI app: /health/live, /health/ready, /metrics and the plug-ins' routes."""

    async def live(_: Request) -> Response:
        return JSONResponse({"status": "live"})

    async def ready(_: Request) -> Response:
        ok, details = app.readiness()
        metrics.READY.set(1 if ok else 0)
        return JSONResponse({"status": "ready" if ok else "not_ready", "checks": details},
                            status_code=200 if ok else 503)

    async def prometheus(_: Request) -> Response:
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/health/live", live),
        Route("/health/ready", ready),
        Route("/metrics", prometheus),
        *app.admin_routes,
    ]
    return Starlette(routes=routes)


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: Link's runtime owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def admin_server(app: LinkApp, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(build_admin_app(app), host=host, port=port, log_level="warning",
                            lifespan="off", access_log=False)
    return _QuietServer(config)
