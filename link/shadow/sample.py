"""One observed request/response, reduced to its structure and masked before it is kept.

A :class:`Sample` holds no value that could identify a person: path segments
are kept as words only when they look like a route's literal parts (``users``,
``v2``) and are not flagged by the PII detectors; every other segment is kept
as its kind (``integer``, ``uuid`` …) plus a keyed pseudonym, so inference can
still count how many distinct values a position takes. Query parameters and
headers keep their names and the kinds of their values; bodies keep their
:class:`~link.shadow.shape.Shape`. Credentials are reduced to the scheme seen.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from link.shadow.shape import Shape, value_kind
from link.snapshots.masking import PiiMasker

__all__ = ["Observation", "Sample", "SampleBuilder"]

# A segment kept as a word: letters (and - _), at most one trailing version digit run, short.
_LITERAL = re.compile(r"^[A-Za-z][A-Za-z_-]{0,39}\d{0,2}$")
_VERSION = re.compile(r"^v\d{1,3}$")
# Headers that say nothing about the API (hop-by-hop, proxies', Envoy's own).
_IGNORED_HEADERS = frozenset({
    "host", "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length",
    "accept-encoding", "user-agent", "x-request-id", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
    "x-real-ip", "via", "traceparent", "tracestate", "date", "server",
})
_MAX_HEADERS = 48
_MAX_QUERY = 48


@dataclass(slots=True)
class Observation:
    """What was seen of one exchange (raw, in memory only, never stored)."""

    method: str
    path: str  # with the query string
    request_headers: dict[str, str]
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    request_body: bytes = b""
    response_body: bytes = b""
    request_truncated: bool = False
    response_truncated: bool = False


@dataclass(slots=True)
class Sample:
    """The masked structure of one exchange: what is kept in memory and on disk."""

    api: str
    tenant: str
    ts: float
    method: str
    segments: list[str]  # literal words, or "{kind}:pseudonym"
    query: dict[str, str]  # name -> value kind
    headers: dict[str, str]  # request header name -> value kind
    auth: str  # bearer | basic | api_key:<header> | cookie | none
    status: int
    request_type: str  # media type, "" if no body
    response_type: str
    request_shape: dict[str, Any] | None = None  # Shape.to_dict()
    response_shape: dict[str, Any] | None = None
    pii: list[str] = field(default_factory=list)  # kinds the masker found (values were never kept)

    def to_dict(self) -> dict[str, Any]:
        return {
            "api": self.api, "tenant": self.tenant, "ts": self.ts, "method": self.method,
            "segments": self.segments, "query": self.query, "headers": self.headers, "auth": self.auth,
            "status": self.status, "request_type": self.request_type, "response_type": self.response_type,
            "request_shape": self.request_shape, "response_shape": self.response_shape, "pii": self.pii,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Sample:
        return cls(
            api=str(d["api"]), tenant=str(d.get("tenant", "")), ts=float(d["ts"]), method=str(d["method"]),
            segments=list(d["segments"]), query=dict(d.get("query", {})), headers=dict(d.get("headers", {})),
            auth=str(d.get("auth", "none")), status=int(d.get("status", 0)),
            request_type=str(d.get("request_type", "")), response_type=str(d.get("response_type", "")),
            request_shape=d.get("request_shape"), response_shape=d.get("response_shape"),
            pii=list(d.get("pii", [])),
        )


def _media_type(headers: Mapping[str, str]) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


class SampleBuilder:
    """Turns raw observations into masked samples; the only place raw values are looked at."""

    def __init__(self, api: str, tenant: str, key: bytes, masker: PiiMasker | None = None,
                 api_key_headers: tuple[str, ...] = ("x-api-key",)) -> None:
        self.api = api
        self.tenant = tenant
        self._key = key
        self._masker = masker or PiiMasker(mask_keys=("password", "secret", "token", "apikey", "api_key"))
        self._api_key_headers = tuple(h.lower() for h in api_key_headers)

    def pseudonym(self, value: str) -> str:
        """A short keyed hash: equal values stay equal, values cannot be read back."""
        return hmac.new(self._key, value.encode("utf-8", "replace"), hashlib.sha256).hexdigest()[:10]

    def _segment(self, raw: str, found: set[str]) -> str:
        text = unquote(raw)
        kind = value_kind(text)
        if kind in ("uuid", "date", "date-time"):  # formats the detectors would only misread
            return f"{{{kind}}}:{self.pseudonym(text)}"
        masked = self._masker.mask_text(text, found)
        if masked == text and (_LITERAL.match(text) or _VERSION.match(text)) and kind == "string":
            return text
        return f"{{{'pii' if masked != text else kind}}}:{self.pseudonym(text)}"

    def _rename_key(self, found: set[str]) -> Any:
        def rename(key: str) -> str:
            masked = self._masker.mask_text(key, found)
            return "[masked-key]" if masked != key else key
        return rename

    def _body_shape(self, body: bytes, media: str, truncated: bool, found: set[str]) -> dict[str, Any] | None:
        if not body or truncated:
            return None
        value: Any
        if media == "application/json" or media.endswith("+json"):
            try:
                value = json.loads(body)
            except (ValueError, RecursionError):
                return None
        elif media == "application/x-www-form-urlencoded":
            try:
                pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
            except ValueError:
                return None
            value = {k: _typed(v) for k, v in pairs[:_MAX_QUERY]}
        else:
            return None
        return Shape.of(value, self._rename_key(found)).to_dict()

    def build(self, obs: Observation, now: float | None = None) -> Sample:
        found: set[str] = set()
        path, _, query = obs.path.partition("?")
        segments = [self._segment(s, found) for s in path.split("/") if s]
        params: dict[str, str] = {}
        for name, value in parse_qsl(query, keep_blank_values=True)[:_MAX_QUERY]:
            key = self._rename_key(found)(name)
            params[key] = "pii" if self._masker.mask_text(value, found) != value else value_kind(value)
        headers: dict[str, str] = {}
        auth = "none"
        for name, value in obs.request_headers.items():
            low = name.lower()
            if low.startswith(":") or low in _IGNORED_HEADERS or low.startswith("x-envoy-"):
                continue
            if low in ("authorization", "proxy-authorization"):
                scheme = value.split(" ", 1)[0].lower()
                auth = scheme if scheme in ("bearer", "basic", "digest", "negotiate") else "other"
                continue
            if low in self._api_key_headers:
                auth = f"api_key:{low}"
                continue
            if low == "cookie":
                auth = "cookie" if auth == "none" else auth
                continue
            if len(headers) < _MAX_HEADERS:
                headers[low] = "secret" if self._masker.is_masked_key(low) else value_kind(value)
        req_type = _media_type(obs.request_headers) if obs.request_body else ""
        resp_type = _media_type(obs.response_headers)
        return Sample(
            api=self.api, tenant=self.tenant, ts=time.time() if now is None else now, method=obs.method.upper(),
            segments=segments, query=params, headers=headers, auth=auth, status=obs.status,
            request_type=req_type, response_type=resp_type,
            request_shape=self._body_shape(obs.request_body, req_type, obs.request_truncated, found),
            response_shape=self._body_shape(obs.response_body, resp_type, obs.response_truncated, found),
            pii=sorted(found),
        )


def _typed(text: str) -> Any:
    """A form value as the JSON type it reads as (so shapes of form bodies carry types)."""
    kind = value_kind(text)
    if kind == "integer":
        return int(text)
    if kind == "number":
        return float(text)
    if kind == "boolean":
        return text == "true"
    return text
