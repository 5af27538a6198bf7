"""The whole data plane for one test: echo upstream + Link (in a thread) + real Envoy."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import httpx

from tests.harness.envoy import HARNESS_TIMEOUTS, EnvoyProcess, envoy_for
from tests.harness.link_server import LinkThread, link_settings
from tests.harness.upstream import EchoUpstream


class Sidecar:
    """``with Sidecar({"policy.enabled": True}, routes=[...]) as sc: sc.get("/x")``

    ``envoy_options`` go to the bootstrap generator (e.g. ``failure_mode="open"``,
    ``ext_proc_prefixes=("/orders",)``); what points ext_authz at Link (transport, address,
    headers, body routes) follows Link's settings. ``transport`` picks the decision path
    (``http`` or ``grpc``; default: the settings' own); ``uds`` serves HTTP decisions on a Unix socket.
    """

    def __init__(self, overrides: dict[str, Any] | None = None, routes: list[dict[str, Any]] | None = None,
                 envoy_options: dict[str, Any] | None = None, config_file: str | None = None,
                 transport: str | None = None, uds: bool = False) -> None:
        overrides = dict(overrides or {})
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if transport is not None:
            overrides["server.authz_transport"] = transport
        if uds:
            self._tmp = tempfile.TemporaryDirectory(prefix="stoa-uds-")
            overrides["server.http_uds"] = str(Path(self._tmp.name) / "authz.sock")
        self.settings = link_settings(overrides, routes, config_file)
        self.upstream = EchoUpstream()
        self.link = LinkThread(self.settings)
        self._envoy_options = envoy_options or {}
        self.envoy: EnvoyProcess | None = None
        self.client: httpx.Client | None = None

    @property
    def url(self) -> str:
        assert self.envoy is not None
        return self.envoy.url

    def start(self) -> Sidecar:
        self.upstream.start()
        self.link.start()
        try:
            options = {**HARNESS_TIMEOUTS, **self.link.authz_options(), **self._envoy_options}
            self.envoy = envoy_for([self.link.grpc_address], self.upstream.url, **options).start()
        except Exception:
            self.link.stop()
            self.upstream.stop()
            raise
        self.client = httpx.Client(base_url=self.url, timeout=10.0)
        return self

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        assert self.client is not None
        return self.client.request(method, path, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.envoy is not None:
            self.envoy.stop()
        self.link.stop()
        self.upstream.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Sidecar:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
