"""Several Link processes on one host.

gRPC: Envoy keeps few long-lived HTTP/2 connections, so processes behind one shared port would
not share requests. Each worker listens on its own port (``grpc_address`` + i, ``admin_address``
+ i) and Envoy's Link cluster lists them all (``stoa-link envoy-config --link
127.0.0.1:9191,127.0.0.1:9192``), balancing per request.

HTTP decisions: Envoy opens many HTTP/1.1 connections, so every worker shares the same listening
socket (bound once by the first process, inherited by the others) and the kernel spreads the
connections; Envoy's cluster has one endpoint.

The pod stays one gateway: the first process alone serves MCP, registers with the
control plane and heartbeats; the others learn its gateway id through
``controlplane.gateway_id_file`` (see :mod:`link.controlplane.shared`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from link.settings import Settings


def _shift(address: str, offset: int) -> str:
    host, _, port = address.rpartition(":")
    return f"{host}:{int(port) + offset}" if int(port) else address


def worker_addresses(settings: Settings) -> list[str]:
    """The gRPC address of every worker, first one included (the HTTP sockets are shared)."""
    return [_shift(settings.server.grpc_address, i) for i in range(settings.server.workers)]


def spawn_workers(settings: Settings, argv: list[str],
                  http_sockets: list[socket.socket] | None = None) -> list[subprocess.Popen[bytes]]:
    """Start workers 1..N-1 as child processes; the caller serves as worker 0.

    Children get the caller's own arguments plus their port overrides, inherit the HTTP
    decision socket, and stop when the parent forwards SIGTERM. They neither serve MCP nor
    register: the caller does both, and writes its gateway id to ``controlplane.gateway_id_file``.
    """
    from link.controlplane.shared import clear_worker_files
    from link.httpauthz.server import INHERITED_FDS_ENV

    if settings.controlplane.gateway_id_file:  # an earlier run's worker files would be counted again
        clear_worker_files(os.path.dirname(settings.controlplane.gateway_id_file) or ".")
    fds = tuple(s.fileno() for s in http_sockets or [])
    env = {**os.environ, INHERITED_FDS_ENV: ",".join(map(str, fds))} if fds else None
    children = []
    for i in range(1, settings.server.workers):
        extra = [
            "--server-workers", "1",
            "--server-grpc-address", _shift(settings.server.grpc_address, i),
            "--server-admin-address", _shift(settings.server.admin_address, i),
        ]
        # Each process owns its metering spool (the directory is locked to one writer).
        extra += ["--metering-spool-dir", f"{settings.metering.spool_dir}/worker-{i}"]
        # One MCP port and one registration per pod: both belong to worker 0.
        extra += ["--mcp-enabled", "false", "--controlplane-url", ""]
        if settings.controlplane.gateway_id_file:
            extra += ["--controlplane-gateway-id-file", settings.controlplane.gateway_id_file]
        # One tap per Envoy: worker 0 attaches it (Envoy's admin takes one subscriber per tap id).
        extra += ["--set", "snapshots.tap_subscribe=false"]
        if settings.server.grpc_uds:
            extra += ["--server-grpc-uds", f"{settings.server.grpc_uds}.{i}"]
        children.append(subprocess.Popen([sys.executable, "-m", "link.cli", *argv, *extra],
                                         pass_fds=fds, env=env))
    return children


def wait_children(children: list[subprocess.Popen[bytes]], timeout: float) -> None:
    for child in children:
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)
