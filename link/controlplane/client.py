"""The control-plane client: register at start-up, then heartbeat at the server's interval.

Everything runs in one background task, so traffic is served whatever the
control plane does. The loop:

- register (``POST /v1/internal/gateways/register``); while the control plane is
  unreachable or answers 5xx, retry with exponential backoff and jitter;
- heartbeat (``POST /v1/internal/gateways/{gateway_id}/heartbeat``) every
  ``heartbeat_interval_s`` the server returned; failed heartbeats back off too;
- a heartbeat answered 404 means the control plane forgot us: register again;
- 401/403 means the gateway key is wrong: log it clearly and stop trying
  (retrying cannot fix a bad key; a restart after fixing the Secret does).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import httpx

import link
from link.backoff import Backoff
from link.component import cancel_task
from link.controlplane.counters import request_counters
from link.controlplane.metrics import HEARTBEATS, REGISTERED, REGISTRATIONS
from link.controlplane.registration import GatewayKeyError, read_gateway_key, registration_body
from link.settings import Settings

_log = logging.getLogger("stoa.link.controlplane")

REGISTER_PATH = "/v1/internal/gateways/register"
HEARTBEAT_PATH = "/v1/internal/gateways/{gateway_id}/heartbeat"

Sleep = Callable[[float], Awaitable[None]]


class RegistrationState(StrEnum):
    """Where the client is; shown in ``/health/ready`` details."""

    STARTING = "starting"
    REGISTERING = "registering"
    REGISTERED = "registered"
    RETRYING = "retrying"  # the last call failed; waiting out a backoff delay
    STOPPED = "stopped"  # refused (401/403) or shut down


class _Result(StrEnum):
    OK = "ok"
    NOT_FOUND = "not_found"
    UNAUTHORIZED = "unauthorized"
    ERROR = "error"
    UNREACHABLE = "unreachable"


class ControlPlaneClient:
    """Registers this instance and keeps it alive on the control plane (a Link component)."""

    name = "controlplane"

    def __init__(
        self,
        settings: Settings,
        *,
        status: Callable[[], str] = lambda: "healthy",
        counters: Callable[[], Mapping[str, int]] = request_counters,
        started_at: float | None = None,
        env: Mapping[str, str] | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        on_registered: Callable[[str], None] | None = None,
    ) -> None:
        cp = settings.controlplane
        if not cp.url:
            raise ValueError("controlplane.url is not set; the client is off")
        self._settings = settings
        self._base = cp.url.rstrip("/")
        self._status = status
        self._counters = counters
        self._started_at = time.time() if started_at is None else started_at
        self._env = env
        self._sleep = sleep
        self._transport = transport
        self._on_registered = on_registered
        self._backoff = Backoff(cp.backoff_initial_s, cp.backoff_max_s, rng)
        self._task: asyncio.Task[None] | None = None
        self._key: str | None = None
        self.state = RegistrationState.STARTING
        self.gateway_id: str | None = None
        self.heartbeat_interval_s: float | None = None
        self.last_error = ""
        self.last_ok_at: float | None = None

    # -- Component -----------------------------------------------------------
    async def start(self) -> None:
        """Start the background loop; returns at once (never waits for the network)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="stoa-controlplane")

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None
        self._set_registered(False)
        if self.state is not RegistrationState.STOPPED:
            self.state = RegistrationState.STOPPED
            self.last_error = self.last_error or "shut down"

    def readiness(self) -> tuple[bool, str]:
        """Always ready: the control plane is never on the request path; the detail tells the state."""
        return True, self.describe()

    def describe(self) -> str:
        """One line on the registration state, for humans."""
        s = self.state
        if s is RegistrationState.REGISTERED:
            ago = f", last heartbeat ok {time.time() - self.last_ok_at:.0f}s ago" if self.last_ok_at else ""
            return f"registered as {self.gateway_id} (heartbeat every {self.heartbeat_interval_s:g}s{ago})"
        if s is RegistrationState.RETRYING:
            what = "heartbeat" if self.gateway_id else "registration"
            return f"{what} failing ({self.last_error}); retrying with backoff"
        if s is RegistrationState.STOPPED:
            return f"stopped: {self.last_error}"
        return str(s)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- the loop ------------------------------------------------------------
    async def _run(self) -> None:
        async with self._http_client() as http:
            while True:
                result = await self._register(http)
                if result is _Result.UNAUTHORIZED:
                    return
                if result is not _Result.OK:
                    await self._sleep(self._backoff.next_delay())
                    continue
                self._backoff.reset()
                if await self._heartbeats(http) is _Result.UNAUTHORIZED:
                    return
                # NOT_FOUND: the control plane forgot this gateway; register again at once.

    async def _heartbeats(self, http: httpx.AsyncClient) -> _Result:
        """Heartbeat until the control plane says 404 or 401/403; returns which."""
        assert self.heartbeat_interval_s is not None
        delay = self.heartbeat_interval_s
        while True:
            await self._sleep(delay)
            result = await self._heartbeat(http)
            if result is _Result.OK:
                self._backoff.reset()
                delay = self.heartbeat_interval_s
            elif result in (_Result.NOT_FOUND, _Result.UNAUTHORIZED):
                return result
            else:
                delay = self._backoff.next_delay()

    async def _register(self, http: httpx.AsyncClient) -> _Result:
        self.state = RegistrationState.REGISTERING
        self._set_registered(False)
        try:
            self._key = read_gateway_key(self._settings.controlplane)
        except GatewayKeyError as exc:
            # The Secret may not be mounted yet: back off and read it again.
            return self._failed(REGISTRATIONS, _Result.ERROR, str(exc))
        body = registration_body(self._settings, self._env)
        result, response, why = await self._post(http, REGISTER_PATH, body)
        if result is not _Result.OK:
            if result is _Result.NOT_FOUND:
                result = _Result.ERROR  # no register endpoint there: a wrong URL, keep trying
            return self._failed(REGISTRATIONS, result, why)
        assert response is not None
        parsed = self._parse_registration(response)
        if isinstance(parsed, str):
            return self._failed(REGISTRATIONS, _Result.ERROR, parsed)
        self.gateway_id, self.heartbeat_interval_s = parsed
        REGISTRATIONS.labels(result="ok").inc()
        self._succeeded()
        if self._on_registered is not None:
            try:
                self._on_registered(self.gateway_id)
            except Exception:
                _log.exception("on_registered callback failed")
        _log.info(
            "registered with the control plane as %s (%s, heartbeat every %gs)",
            self.gateway_id, body["instance_name"], self.heartbeat_interval_s,
        )
        return _Result.OK

    async def _heartbeat(self, http: httpx.AsyncClient) -> _Result:
        assert self.gateway_id is not None
        body = {
            "status": self._safe_status(),
            "uptime_s": int(time.time() - self._started_at),
            "metrics": dict(self._counters()),
        }
        path = HEARTBEAT_PATH.format(gateway_id=quote(self.gateway_id, safe=""))
        result, _, why = await self._post(http, path, body)
        if result is _Result.OK:
            HEARTBEATS.labels(result="ok").inc()
            self._succeeded()
            return result
        if result is _Result.NOT_FOUND:
            HEARTBEATS.labels(result="not_found").inc()
            _log.warning("control plane does not know gateway %s (404); registering again", self.gateway_id)
            self._set_registered(False)
            self.gateway_id = None
            return result
        return self._failed(HEARTBEATS, result, why)

    # -- HTTP ----------------------------------------------------------------
    def _http_client(self) -> httpx.AsyncClient:
        cp = self._settings.controlplane
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=cp.ca_file) if cp.ca_file else True
        return httpx.AsyncClient(
            timeout=cp.timeout_s,
            verify=verify,
            transport=self._transport,
            headers={"User-Agent": f"stoa-link/{link.__version__}"},
            follow_redirects=False,
        )

    async def _post(
        self, http: httpx.AsyncClient, path: str, body: dict[str, Any]
    ) -> tuple[_Result, httpx.Response | None, str]:
        headers = {"X-Gateway-Key": self._key} if self._key else {}
        try:
            response = await http.post(self._base + path, json=body, headers=headers)
        except httpx.TransportError as exc:
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return _Result.UNREACHABLE, None, why
        code = response.status_code
        if 200 <= code < 300:
            return _Result.OK, response, ""
        if code == 404:
            return _Result.NOT_FOUND, response, "HTTP 404"
        if code in (401, 403):
            return _Result.UNAUTHORIZED, response, f"HTTP {code}"
        return _Result.ERROR, response, f"HTTP {code}"

    def _parse_registration(self, response: httpx.Response) -> tuple[str, float] | str:
        """``(gateway_id, interval)`` from a register answer, or why it is unusable."""
        try:
            data = response.json()
        except ValueError:
            return "register answer is not JSON"
        if not isinstance(data, dict):
            return "register answer is not a JSON object"
        gateway_id = data.get("gateway_id")
        if not isinstance(gateway_id, str) or not gateway_id:
            return "register answer has no gateway_id"
        interval = data.get("heartbeat_interval_s")
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
            return f"register answer has no positive heartbeat_interval_s (got {interval!r})"
        return gateway_id, max(float(interval), self._settings.controlplane.heartbeat_interval_min_s)

    # -- bookkeeping -----------------------------------------------------------
    def _failed(self, counter: Any, result: _Result, why: str) -> _Result:
        counter.labels(result=result.value).inc()
        self.last_error = why
        if result is _Result.UNAUTHORIZED:
            self.state = RegistrationState.STOPPED
            self.last_error = (
                f"the control plane refused the gateway key ({why}); check controlplane.gateway_key "
                "or the Secret behind controlplane.gateway_key_file, then restart"
            )
            self._set_registered(False)
            _log.error("control-plane registration stopped: %s. Traffic keeps being served.", self.last_error)
            return result
        self.state = RegistrationState.RETRYING
        # Warn on the first failure and then now and then, not on every retry of a long outage.
        if self._backoff.attempts % 10 == 0:
            _log.warning("control plane %s: %s; retrying with backoff", self._base, why)
        return result

    def _succeeded(self) -> None:
        self.state = RegistrationState.REGISTERED
        self.last_error = ""
        self.last_ok_at = time.time()
        self._set_registered(True)

    def _safe_status(self) -> str:
        try:
            return str(self._status())
        except Exception:  # a broken readiness check must not stop the heartbeats
            _log.exception("status check failed")
            return "degraded"

    @staticmethod
    def _set_registered(on: bool) -> None:
        REGISTERED.set(1 if on else 0)
