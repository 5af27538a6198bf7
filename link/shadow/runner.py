"""``stoa-link serve --mode=shadow``: watch legacy APIs, learn their contracts, change nothing.

Start-up: the masked-sample store (purged to the retention first), the
observability ext_proc service on ``server.grpc_address``, and, unless
``envoy.supervise`` is false (Kubernetes runs Envoy beside Link), an Envoy
child built by :func:`~link.envoyconf.shadow.build_shadow_bootstrap`. Every
``shadow.infer_interval_s`` the queued samples are flushed and the drafts
re-learned into ``shadow.output``; once more at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from link.envoyconf.bootstrap import render_yaml
from link.envoyconf.shadow import ShadowApi, ShadowEnvoyOptions, build_shadow_bootstrap
from link.settings import Settings
from link.shadow.capture import ShadowCapture
from link.shadow.infer import infer_operations
from link.shadow.output import write_outputs
from link.shadow.sample import SampleBuilder
from link.shadow.store import SampleStore
from link.snapshots.masking import PiiMasker

__all__ = ["ShadowRun", "shadow_apis", "shadow_envoy_options"]

_log = logging.getLogger("stoa.link.shadow")


def _name_of(target: str) -> str:
    host = urlsplit(target).hostname or "legacy-api"
    return "-".join(p for p in "".join(c if c.isalnum() else "-" for c in host.lower()).split("-") if p) or "api"


def shadow_apis(settings: Settings) -> list[tuple[ShadowApi, str]]:
    """Every configured API with its tenant; ``--target`` is one API, opted in by being named."""
    s = settings.shadow
    apis: list[tuple[ShadowApi, str]] = []
    if s.target:
        apis.append((ShadowApi(name=s.name or _name_of(s.target), target=s.target, opt_in=True), s.tenant))
    for a in s.apis:
        apis.append((ShadowApi(name=a.name, target=a.target, prefix=a.prefix, opt_in=a.opt_in), a.tenant))
    return apis


def shadow_envoy_options(settings: Settings, link_address: str | None = None) -> ShadowEnvoyOptions:
    e = settings.envoy
    return ShadowEnvoyOptions(
        apis=tuple(a for a, _ in shadow_apis(settings)),
        listen_address=e.listen_address, listen_port=e.listen_port, admin_port=e.admin_port,
        link=link_address or settings.server.grpc_address,
        max_downstream_connections=e.max_downstream_connections, max_heap_bytes=e.max_heap_bytes,
    )


class ShadowRun:
    """The running shadow mode: store, capture service, learning loop, optional Envoy child."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        s = settings.shadow
        self.output = Path(s.output)
        self.store = SampleStore(s.samples_dir or self.output / ".samples", s.retention_days,
                                 max_bytes=s.max_disk_bytes, max_pending=s.max_pending)
        key = self.store.pseudonym_key()
        masker = PiiMasker(mask_keys=settings.snapshots.mask_keys)
        self.apis = shadow_apis(settings)
        self.targets = {a.name: a.target for a, _ in self.apis}
        builders = {a.name: SampleBuilder(a.name, tenant, key, masker, tuple(s.api_key_headers))
                    for a, tenant in self.apis if a.opt_in}
        self.capture = ShadowCapture(builders, self.store, s.max_body_bytes)
        self.server = grpc.aio.server()
        ep_grpc.add_ExternalProcessorServicer_to_server(self.capture, self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = self.server.add_insecure_port(settings.server.grpc_address)
        if self.port == 0:
            raise OSError(f"server.grpc_address {settings.server.grpc_address}: the port is in use")

    def learn(self) -> int:
        """Flush queued samples, re-learn, write the drafts; returns the number of operations."""
        self.store.flush()
        ops = infer_operations(self.store.samples())
        if ops:
            write_outputs(self.output, ops, self.targets)
        return len(ops)

    async def run(self, stop: asyncio.Event) -> int:
        from link.envoy_child import EnvoyChild

        removed = self.store.purge()
        if removed:
            _log.info("shadow: purged %d sample files past the retention", len(removed))
        await self.server.start()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        envoy: EnvoyChild | None = None
        status = 0
        try:
            if self.settings.envoy.supervise:
                host = self.settings.server.grpc_address.rpartition(":")[0]
                opts = shadow_envoy_options(self.settings, link_address=f"{host}:{self.port}")
                envoy = await asyncio.to_thread(EnvoyChild(render_yaml(build_shadow_bootstrap(opts))).start)
            self._banner()
            loop = asyncio.get_running_loop()
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.shadow.infer_interval_s)
                await loop.run_in_executor(None, self.learn)
                if envoy is not None and not envoy.alive:
                    print(f"stoa-link: envoy exited: {envoy.tail()}", file=sys.stderr)
                    status = 1
                    break
        finally:
            if envoy is not None:
                await asyncio.to_thread(envoy.stop)
            await self.server.stop(2)
            await asyncio.to_thread(self.learn)
        return status

    def _banner(self) -> None:
        e = self.settings.envoy
        s = self.settings.shadow
        captured = [a.name for a, _ in self.apis if a.opt_in]
        skipped = [a.name for a, _ in self.apis if not a.opt_in]
        lines = ["", "STOA Link shadow mode (observes, never changes a request)"]
        if self.settings.envoy.supervise:
            lines.append(f"  listening               http://{e.listen_address}:{e.listen_port}")
        for a, _ in self.apis:
            lines.append(f"  {a.prefix:<23} -> {a.target}   ({'captured' if a.opt_in else 'NOT captured: no opt-in'})")
        if not captured:
            lines.append("  no API opted in: nothing is captured (set shadow.apis[].opt_in: true)")
        lines += [
            f"  drafts                  {self.output}  (review: stoa-link shadow review {self.output})",
            f"  masked samples          {self.store.directory}  (kept {s.retention_days:g} days, then purged)",
            "",
        ]
        if skipped:
            _log.warning("shadow: APIs without opt-in are proxied but not captured: %s", ", ".join(skipped))
        print("\n".join(lines), flush=True)


def run_shadow(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; the exit status."""

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await ShadowRun(settings).run(stop)

    return asyncio.run(main())
