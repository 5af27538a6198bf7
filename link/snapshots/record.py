"""From a captured :class:`Exchange` to the sanitised error snapshot document.

The document is the JSON form of ``stoa.errors.v1.ErrorSnapshot`` (proto/): the
metering fields, flat, plus the snapshot's own. It is built from masked parts
only; nothing of the raw exchange survives except what masking let through.
"""

from __future__ import annotations

import json
import uuid
from http import HTTPStatus
from typing import Any

from link.events import Exchange, HttpMessage
from link.metering.event import EventOrigin, rfc3339
from link.metering.event import round_ms as _ms
from link.model import Outcome
from link.snapshots.masking import PiiMasker
from link.snapshots.replay import replay_command

__all__ = ["SnapshotOrigin", "build_snapshot", "error_type"]


# Snapshots carry the metering fields: same origin, same timestamp and duration encoding.
SnapshotOrigin = EventOrigin


_UPSTREAM_ERRORS = {502: "bad_gateway", 503: "upstream_unavailable", 504: "upstream_timeout"}


def error_type(exchange: Exchange) -> str:
    """A short machine name for what went wrong, from Link's outcome and the status."""
    if exchange.outcome not in (Outcome.SUCCESS, Outcome.ERROR):
        return str(exchange.outcome.value)  # refused by Link: policy_denied, rate_limited …
    if exchange.reason and exchange.reason not in ("", "ok"):
        return exchange.reason
    status = exchange.status
    if status in _UPSTREAM_ERRORS:
        return _UPSTREAM_ERRORS[status]
    if status >= 500:
        return "upstream_5xx"
    if status >= 400:
        return "client_4xx"
    return "error"


def _status(exchange: Exchange) -> str:
    """The metering ``status``: Link's outcome, corrected by what happened upstream (as metering does)."""
    outcome = exchange.outcome
    if outcome is Outcome.SUCCESS:
        if exchange.status >= 500:
            outcome = Outcome.ERROR
        elif exchange.status == 404:
            outcome = Outcome.NOT_FOUND
    return str(outcome.value)


def _error_message(body: str, status: int) -> str:
    """The upstream's own message when its (masked) body has one, else the status phrase."""
    try:
        doc = json.loads(body) if body[:1] in ("{", "[") else None
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        for key in ("message", "error_description", "detail", "error", "reason", "title"):
            value = doc.get(key)
            if isinstance(value, str) and value:
                return value[:500]
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return str(value["message"])[:500]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _size(message: HttpMessage) -> int:
    length = message.headers.get("content-length", "")
    return int(length) if length.isdigit() else len(message.body)


def _excerpt(masker: PiiMasker, message: HttpMessage, found: set[str]) -> dict[str, Any]:
    headers = masker.mask_headers(message.headers, found)
    return {
        "headers": headers,
        "body": masker.mask_body(message.body, message.headers, message.body_truncated, found),
        "body_truncated": message.body_truncated,
        "body_size_bytes": _size(message),
    }


def build_snapshot(
    exchange: Exchange,
    masker: PiiMasker,
    origin: SnapshotOrigin,
    *,
    snapshot_id: str | None = None,
    strip_header_prefix: str = "x-stoa-",
) -> dict[str, Any]:
    """The sanitised snapshot of one exchange (a JSON-ready mapping)."""
    found: set[str] = set()
    sid = snapshot_id or str(uuid.uuid4())
    request = _excerpt(masker, exchange.request, found)
    response = _excerpt(masker, exchange.response, found)
    path = masker.mask_url(exchange.path, found)
    timing = {k: _ms(v) for k, v in exchange.timing_ms.items()}
    latency = timing.get("total", 0.0) or sum(timing.values())
    backend = timing.get("upstream", 0.0)
    # Identity fields can hold an e-mail address (a token's `sub`, an API-key owner).
    subject = masker.mask_text(exchange.subject, found)
    consumer = masker.mask_text(exchange.consumer, found)
    return {
        "event_id": sid,
        "timestamp": rfc3339(exchange.timestamp),
        "gateway_id": origin.gateway_id,
        "instance": origin.instance,
        "mode": origin.mode,
        "tenant_id": exchange.tenant,
        "user_id": subject,
        "consumer_id": consumer,
        "api": exchange.api,
        "tool_name": exchange.tool,
        "route": exchange.route,
        "method": exchange.method,
        "http_status": exchange.status,
        "status": _status(exchange),
        "latency_ms": latency,
        "t_gateway_ms": _ms(max(0.0, latency - backend)),
        "t_backend_ms": backend,
        "request_size_bytes": request["body_size_bytes"],
        "response_size_bytes": response["body_size_bytes"],
        "scopes": list(exchange.scopes),
        "roles": list(exchange.roles),
        "trace_id": exchange.trace_id,
        "request_id": exchange.request_id,
        "decision_id": exchange.decision_id,
        "reason": exchange.reason,
        "snapshot_id": sid,
        "error_type": error_type(exchange),
        "error_message": _error_message(response["body"], exchange.status),
        "request_path": path,
        "request_method": exchange.method,
        "response_status": exchange.status,
        "request": request,
        "response": response,
        "timing": timing,
        "pii_found": bool(found),
        "pii_kinds": sorted(found),
        "replay_command": replay_command(
            exchange.method,
            path,
            request["headers"],
            request["body"],
            body_truncated=exchange.request.body_truncated,
            strip_prefix=strip_header_prefix,
        ),
    }
