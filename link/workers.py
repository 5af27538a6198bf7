"""Several Link processes on one host: Envoy keeps few long-lived HTTP/2 connections, so processes
behind one shared port would not share requests. Each worker listens on its own port
(``grpc_address`` + i, ``admin_address`` + i) and Envoy's Link cluster lists them all
(``stoa-link envoy-config --link 127.0.0.1:9191,127.0.0.1:9192``), balancing per request.
"""

from __future__ import annotations

import subprocess
import sys

from link.settings import Settings


def _shift(address: str, offset: int) -> str:
    host, _, port = address.rpartition(":")
    return f"{host}:{int(port) + offset}" if int(port) else address


def worker_addresses(settings: Settings) -> list[str]:
    """The gRPC address of every worker, first one included."""
    return [_shift(settings.server.grpc_address, i) for i in range(settings.server.workers)]


def spawn_workers(settings: Settings, argv: list[str]) -> list[subprocess.Popen[bytes]]:
    """Start workers 1..N-1 as child processes; the caller serves as worker 0.

    Children get the caller's own arguments plus their port overrides, and stop
    when the parent forwards SIGTERM.
    """
    children = []
    for i in range(1, settings.server.workers):
        extra = [
            "--server-workers", "1",
            "--server-grpc-address", _shift(settings.server.grpc_address, i),
            "--server-admin-address", _shift(settings.server.admin_address, i),
        ]
        # Each process owns its metering spool (the directory is locked to one writer).
        extra += ["--metering-spool-dir", f"{settings.metering.spool_dir}/worker-{i}"]
        if settings.server.grpc_uds:
            extra += ["--server-grpc-uds", f"{settings.server.grpc_uds}.{i}"]
        children.append(subprocess.Popen([sys.executable, "-m", "link.cli", *argv, *extra]))
    return children


def wait_children(children: list[subprocess.Popen[bytes]], timeout: float) -> None:
    for child in children:
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)
