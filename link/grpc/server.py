"""The gRPC server Envoy talks to: ext_authz, ext_proc, access-log service and gRPC health."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from envoy.service.accesslog.v3 import als_pb2_grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from link.grpc.accesslog import AccessLogService
from link.grpc.authz import AuthorizationService
from link.grpc.extproc import ExternalProcessorService

if TYPE_CHECKING:
    from link.app import LinkApp

SERVICE_NAMES = (
    "envoy.service.auth.v3.Authorization",
    "envoy.service.ext_proc.v3.ExternalProcessor",
    "envoy.service.accesslog.v3.AccessLogService",
)


def server_options(app: LinkApp) -> list[tuple[str, int]]:
    """Keepalive that matches Envoy's: it pings idle connections; Python's defaults would reject that."""
    s = app.settings.server
    return [
        ("grpc.keepalive_time_ms", s.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", s.keepalive_min_ping_interval_ms),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_concurrent_streams", s.max_concurrent_streams),
        ("grpc.so_reuseport", 0),
    ]


class GrpcServer:
    """Owns the grpc.aio server and its health state."""

    def __init__(self, app: LinkApp) -> None:
        self.app = app
        self.health = health.aio.HealthServicer()
        self.server = grpc.aio.server(options=server_options(app))
        body_cap = app.settings.snapshots.body_excerpt_bytes
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(
            AuthorizationService(app.pipeline, lambda: app.exchange_sink, body_cap=body_cap,
                                 trace_context=app.settings.tracing.enabled), self.server)
        external_processor_pb2_grpc.add_ExternalProcessorServicer_to_server(
            ExternalProcessorService(app.pipeline, lambda: app.exchange_sink, body_cap=body_cap,
                                     trace_context=app.settings.tracing.enabled),
            self.server,
        )
        als_pb2_grpc.add_AccessLogServiceServicer_to_server(AccessLogService(app.bus), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.ports: list[int] = []
        s = app.settings.server
        self.ports.append(self.server.add_insecure_port(s.grpc_address))
        if s.grpc_uds:
            self.server.add_insecure_port(f"unix:{s.grpc_uds}")

    @property
    def port(self) -> int:
        return self.ports[0]

    async def start(self) -> None:
        await self.server.start()
        await self.set_serving(True)

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        """NOT_SERVING first, then let in-flight calls finish within ``grace`` seconds."""
        await self.set_serving(False)
        await self.server.stop(grace)
