"""Error snapshots off the request path: Envoy's tap filter, matched on the response status.

Envoy's HTTP tap filter (``envoy.filters.http.tap``, configured with an
``admin_config``) does nothing until a tap is attached. Link attaches one by
POSTing a tap configuration to Envoy's admin ``/tap`` endpoint: match the
opted-in routes' paths and an error status, buffer bodies up to the excerpt
size, stream each matching request/response trace back on that same HTTP
response (``streaming_admin``, the only sink besides files that Envoy 1.40
implements; ``streaming_grpc`` is declared in the API but not implemented).
So a 2xx response costs Envoy one matcher evaluation and Link nothing.

A trace carries headers, bodies and timestamps but not Link's decision; that
comes from Envoy's access-log feed. :class:`TapJoin` is an outcome sink that
waits (briefly, boundedly) for the access-log entry of a tapped request and
fills in the decision id, tenant, consumer, route and timings; what is not
joined in time is stored with what the trace and Link's own upstream identity
headers say.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

from link.backoff import Backoff
from link.envoyconf.bootstrap import SNAPSHOT_TAP_ID
from link.events import Exchange, ExchangeSink, HttpMessage, RequestOutcome
from link.headers import fold_headers
from link.model import Outcome, Request
from link.ratelimit.bucket import TokenBucket
from link.settings import Settings
from link.snapshots import metrics
from link.telemetry.propagation import trace_id_of

__all__ = ["TAP_CONFIG_ID", "TapJoin", "TapSubscriber", "exchange_from_trace", "status_regex", "tap_request"]

_log = logging.getLogger("stoa.link.snapshots.tap")

# The tap filter's admin_config id in the generated Envoy bootstrap.
TAP_CONFIG_ID = SNAPSHOT_TAP_ID

# A trace is a few KiB (bodies are capped); text that long without one whole object is garbage.
_MAX_PENDING_TEXT = 8 << 20

RouteLookup = Callable[[Request], Any]  # -> RouteMatch | None


def status_regex(capture_5xx: bool, capture_4xx: bool) -> str | None:
    """The ``:status`` values to tap (RE2 syntax), or None when no status class is captured."""
    classes = ("5" if capture_5xx else "") + ("4" if capture_4xx else "")
    if not classes:
        return None
    return f"[{classes}][0-9][0-9]"


def tap_request(settings: Settings, path_prefixes: list[str]) -> dict[str, Any] | None:
    """The body of the admin ``/tap`` request: which exchanges Envoy streams to Link.

    ``path_prefixes``: the opted-in routes' prefixes (empty: any path, for tenant opt-ins).
    """
    s = settings.snapshots
    regex = status_regex(s.capture_5xx, s.capture_4xx)
    if regex is None:
        return None
    status = {"http_response_headers_match": {"headers": [
        {"name": ":status", "string_match": {"safe_regex": {"regex": regex}}}]}}
    rules: list[dict[str, Any]] = [status]
    if path_prefixes:
        paths = [{"http_request_headers_match": {"headers": [
            {"name": ":path", "string_match": {"prefix": p}}]}} for p in path_prefixes]
        rules.insert(0, paths[0] if len(paths) == 1 else {"or_match": {"rules": paths}})
    match = rules[0] if len(rules) == 1 else {"and_match": {"rules": rules}}
    excerpt = max(1, s.body_excerpt_bytes)
    return {
        "config_id": TAP_CONFIG_ID,
        "tap_config": {
            "match": match,
            "output_config": {
                # Streaming admin only takes JSON formats (a binary one aborts Envoy 1.40); bytes are base64.
                "sinks": [{"format": "JSON_BODY_AS_BYTES", "streaming_admin": {}}],
                "max_buffered_rx_bytes": excerpt,
                "max_buffered_tx_bytes": excerpt,
            },
        },
    }


def _headers(items: list[dict[str, Any]]) -> dict[str, str]:
    return fold_headers((str(h.get("key", "")), _header_value(h)) for h in items)


def _header_value(h: dict[str, Any]) -> str:
    raw = h.get("raw_value") or ""  # the tap's JSON carries bytes as base64
    return base64.b64decode(raw).decode("utf-8", "replace") if raw else str(h.get("value", ""))


def _body(side: dict[str, Any], cap: int) -> tuple[bytes, bool]:
    body = side.get("body") or {}
    if "as_bytes" in body:
        data = base64.b64decode(body["as_bytes"])
    else:
        data = str(body.get("as_string", "")).encode()
    truncated = bool(body.get("truncated")) or len(data) > cap
    return data[:cap], truncated


def _epoch(stamp: Any) -> float:
    if not isinstance(stamp, str) or not stamp:
        return 0.0
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def exchange_from_trace(trace: dict[str, Any], cap: int) -> Exchange | None:
    """One ``http_buffered_trace`` as an exchange (Link's decision not known yet)."""
    buffered = trace.get("http_buffered_trace")
    if not isinstance(buffered, dict):
        return None
    req, resp = buffered.get("request") or {}, buffered.get("response") or {}
    rh, sh = _headers(req.get("headers") or []), _headers(resp.get("headers") or [])
    try:
        status = int(sh.get(":status", "0"))
    except ValueError:
        status = 0
    req_body, req_cut = _body(req, cap)
    resp_body, resp_cut = _body(resp, cap)
    started, answered = _epoch(req.get("headers_received_time")), _epoch(resp.get("headers_received_time"))
    timing = {"upstream": max(0.0, (answered - started) * 1000.0)} if started and answered else {}
    return Exchange(
        request_id=rh.get("x-request-id", ""),
        timestamp=started or time.time(),
        method=rh.get(":method", ""),
        path=rh.get(":path", "/"),
        status=status,
        # Host and scheme stay for the snapshot's replay command; other pseudo-headers go.
        request=HttpMessage(headers={k: v for k, v in rh.items() if not k.startswith(":") or k in
                                     (":authority", ":scheme")}, body=req_body, body_truncated=req_cut),
        response=HttpMessage(headers={k: v for k, v in sh.items() if not k.startswith(":")}, body=resp_body,
                             body_truncated=resp_cut),
        trace_id=trace_id_of(rh.get("traceparent", "")),
        outcome=Outcome.ERROR if status >= 500 else Outcome.SUCCESS,
        timing_ms=timing,
    )


class TapJoin:
    """Joins tapped exchanges with their access-log outcome, then hands them to the snapshot sink.

    An outcome sink: for a 2xx it costs one comparison. Both sides wait at most
    ``wait_s`` for the other (the access log is batched, the tap stream is not),
    and at most ``max_pending`` of each are held.
    """

    def __init__(self, sink: ExchangeSink, routes: RouteLookup, settings: Settings,
                 wait_s: float = 1.5, max_pending: int = 1_000) -> None:
        self._sink = sink
        self._routes = routes
        self._min_status = 400 if settings.snapshots.capture_4xx else 500
        identity = settings.identity
        self._h_tenant, self._h_consumer, self._h_subject = (
            identity.header_tenant, identity.header_consumer, identity.header_subject)
        self._wait_s = wait_s
        self._max = max_pending
        self._exchanges: OrderedDict[str, tuple[float, Exchange]] = OrderedDict()
        self._outcomes: OrderedDict[str, tuple[float, RequestOutcome]] = OrderedDict()

    # -- outcome sink (every finished request) ---------------------------------------------------
    def offer(self, outcome: RequestOutcome) -> None:
        if outcome.http_status < self._min_status:
            return
        parked = self._exchanges.pop(outcome.request_id, None)
        if parked is not None:
            self._complete(parked[1], outcome)
            return
        self._park(self._outcomes, outcome.request_id, outcome)

    # -- tapped exchanges ------------------------------------------------------------------------
    def add(self, exchange: Exchange) -> None:
        outcome = self._outcomes.pop(exchange.request_id, None)
        if outcome is not None:
            self._complete(exchange, outcome[1])
            return
        if not exchange.request_id:
            self._complete(exchange, None)
            return
        self._park(self._exchanges, exchange.request_id, exchange)

    def expire(self, now: float | None = None) -> int:
        """Hand over exchanges whose outcome did not come in time; forget stale outcomes."""
        now = time.monotonic() if now is None else now
        done = 0
        while self._exchanges:
            key, (at, exchange) = next(iter(self._exchanges.items()))
            if now - at < self._wait_s:
                break
            del self._exchanges[key]
            self._complete(exchange, None)
            done += 1
        while self._outcomes and now - next(iter(self._outcomes.values()))[0] >= self._wait_s:
            self._outcomes.popitem(last=False)
        return done

    def _park(self, table: OrderedDict[str, Any], key: str, value: Any) -> None:
        table[key] = (time.monotonic(), value)
        if len(table) > self._max:
            _, (_, oldest) = table.popitem(last=False)
            if isinstance(oldest, Exchange):  # never lose an exchange for want of room: store it unjoined
                self._complete(oldest, None)

    def _complete(self, ex: Exchange, outcome: RequestOutcome | None) -> None:
        path, _, query = ex.path.partition("?")
        route = self._routes(Request(method=ex.method, path=path or "/", query=query,
                                     headers=ex.request.headers, host=ex.request.headers.get(":authority", "")))
        if outcome is not None:
            ex.tenant, ex.consumer, ex.subject = outcome.tenant, outcome.consumer, outcome.subject
            ex.route, ex.api, ex.tool = outcome.route, outcome.api, outcome.tool
            ex.decision_id, ex.reason = outcome.decision_id, outcome.reason
            ex.scopes, ex.roles = list(outcome.scopes), list(outcome.roles)
            ex.outcome = outcome.outcome
            ex.trace_id = ex.trace_id or outcome.trace_id
            ex.timing_ms = {"link": outcome.t_link_ms, "upstream": outcome.t_backend_ms or
                            ex.timing_ms.get("upstream", 0.0), "total": outcome.latency_ms}
        else:
            # Link's own upstream identity headers (ext_authz ran before the tap filter).
            headers = ex.request.headers
            ex.tenant = headers.get(self._h_tenant, "") or (route.tenant or "" if route else "")
            ex.consumer = headers.get(self._h_consumer, "")
            ex.subject = headers.get(self._h_subject, "")
        if route is not None and not ex.route:
            ex.route, ex.api = route.name, route.api or route.name
        if self._sink.wants(ex.status, ex.tenant, bool(route is not None and route.snapshots)):
            self._sink.offer(ex)


class TapSubscriber:
    """A component: keeps one tap attached to Envoy's admin and feeds the traces to :class:`TapJoin`."""

    name = "snapshot-tap"

    def __init__(self, admin_url: str, body: dict[str, Any], join: TapJoin, cap: int,
                 max_per_second: float = 40.0) -> None:
        self._url = admin_url.rstrip("/") + "/tap"
        self._body = body
        self._join = join
        self._cap = cap
        # An error storm streams a trace per failed request: beyond this rate traces are skipped
        # unparsed (the snapshot sink would rate-limit them anyway), so a storm costs Link little.
        self._rate = TokenBucket(max_per_second)
        self._task: asyncio.Task[None] | None = None
        self._expiry: asyncio.Task[None] | None = None
        self.attached = False
        self.traces = 0
        self._error = "not attached yet"

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="snapshot-tap")
            self._expiry = asyncio.create_task(self._expire(), name="snapshot-tap-expiry")

    async def stop(self) -> None:
        from link.component import cancel_task

        await cancel_task(self._task)
        await cancel_task(self._expiry)
        self._task = self._expiry = None
        self._join.expire(now=float("inf"))

    def readiness(self) -> tuple[bool, str]:
        # Diagnostics: a detached tap is reported, never a reason to refuse traffic.
        return True, (f"attached to {self._url}, {self.traces} traces" if self.attached
                      else f"detached from {self._url}: {self._error}")

    async def _expire(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            self._join.expire()

    async def _run(self) -> None:
        backoff = Backoff(0.5, 5.0)  # Envoy restarting or not up yet
        # No read timeout: the tap answer is a stream that stays open as long as the tap is attached.
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=None)) as client:
            while True:
                try:
                    await self._attach(client)
                    backoff.reset()
                except (httpx.HTTPError, OSError, ValueError) as exc:
                    self._error = f"{type(exc).__name__}: {exc}"
                self.attached = False
                await asyncio.sleep(backoff.next_delay())

    async def _attach(self, client: httpx.AsyncClient) -> None:
        decoder = json.JSONDecoder()
        async with client.stream("POST", self._url, json=self._body) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode("utf-8", "replace")[:200]
                raise ValueError(f"Envoy admin answered {response.status_code}: {text}")
            self.attached = True
            self._error = ""
            _log.info("snapshots: tap attached to %s", self._url)
            buffer = ""
            async for chunk in response.aiter_text():
                buffer += chunk
                buffer = self._consume(decoder, buffer)
                if len(buffer) > _MAX_PENDING_TEXT:  # not JSON after all: start over rather than grow
                    raise ValueError("unreadable tap stream")
        self._error = "the tap stream ended"

    def _consume(self, decoder: json.JSONDecoder, buffer: str) -> str:
        """Handle every complete trace in ``buffer`` (Envoy writes one JSON object after another).

        Envoy pretty-prints each trace with nested lines indented, so a top-level object ends at
        the first newline followed by ``}``; its end is found without parsing, and a trace over
        the rate is skipped unparsed. Other layouts are parsed to find their end.
        """
        pos = 0
        while True:
            while pos < len(buffer) and buffer[pos].isspace():
                pos += 1
            if pos >= len(buffer):
                return ""
            close = buffer.find("\n}", pos)
            end = close + 2 if close >= 0 else -1
            if end >= 0 and not self._rate.allow():
                self.traces += 1
                metrics.SNAPSHOTS_DROPPED.labels("rate_limited").inc()
                pos = end
                continue
            try:
                trace, end = decoder.raw_decode(buffer, pos)
            except json.JSONDecodeError:
                if close >= 0:  # a whole object that is not JSON: skip it rather than stall
                    metrics.SNAPSHOTS_DROPPED.labels("error").inc()
                    pos = close + 2
                    continue
                return buffer[pos:]  # incomplete: wait for more
            pos = end
            self.traces += 1
            try:
                exchange = exchange_from_trace(trace, self._cap) if isinstance(trace, dict) else None
            except (ValueError, TypeError) as exc:
                _log.warning("snapshots: unreadable tap trace: %s", exc)
                exchange = None
            if exchange is None:
                metrics.SNAPSHOTS_DROPPED.labels("error").inc()
                continue
            if not exchange.method:
                # Answered before the tap filter saw the request (a refusal of ext_authz, Envoy's own
                # local reply): the trace holds the response only. Link snapshots its own refusals.
                metrics.SNAPSHOTS_DROPPED.labels("no_request").inc()
                continue
            self._join.add(exchange)
