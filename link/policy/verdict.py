"""Reading a policy's answer the way OPA-Envoy does.

The answer is a boolean or an object: ``allowed`` (required), ``headers``
(to the upstream when allowed, to the client when refused),
``response_headers_to_add``, ``request_headers_to_remove``, ``http_status``
(refusals, default 403), ``body`` (refusals) and ``dynamic_metadata``.
Header values may be a string or a list of strings (joined with ``, ``).
An undefined answer is a refusal here (OPA-Envoy reports it as an error,
which a fail-open Envoy would let through).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DecisionFormatError", "Verdict", "read_verdict"]

_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


class DecisionFormatError(ValueError):
    """The policy answered something OPA-Envoy would not accept."""


@dataclass(slots=True)
class Verdict:
    allowed: bool
    http_status: int = 403
    headers: dict[str, str] = field(default_factory=dict)
    response_headers_to_add: dict[str, str] = field(default_factory=dict)
    request_headers_to_remove: list[str] = field(default_factory=list)
    body: str | None = None
    dynamic_metadata: dict[str, Any] = field(default_factory=dict)
    undefined: bool = False


def _headers(value: Any, key: str) -> dict[str, str]:
    items: list[Mapping[str, Any]]
    if isinstance(value, Mapping):
        items = [value]
    elif isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
        items = value
    else:
        raise DecisionFormatError(f"{key}: expected an object of header names to values")
    out: dict[str, str] = {}
    for mapping in items:
        for name, raw in mapping.items():
            if not isinstance(name, str) or not _HEADER_NAME.match(name):
                raise DecisionFormatError(f"{key}: {name!r} is not a valid header name")
            if isinstance(raw, str):
                values = [raw]
            elif isinstance(raw, list) and all(isinstance(v, str) for v in raw):
                values = raw
            else:
                raise DecisionFormatError(f"{key}.{name}: expected a string or a list of strings")
            if any("\n" in v or "\r" in v for v in values):
                raise DecisionFormatError(f"{key}.{name}: header values are single-line")
            lower = name.lower()
            out[lower] = ", ".join([out[lower], *values]) if lower in out else ", ".join(values)
    return out


def read_verdict(value: Any, *, undefined: bool = False) -> Verdict:
    """Turn the query's value into a :class:`Verdict`; raises :class:`DecisionFormatError`."""
    if undefined:
        return Verdict(allowed=False, undefined=True)
    if isinstance(value, bool):
        return Verdict(allowed=value)
    if not isinstance(value, Mapping):
        raise DecisionFormatError(f"expected a boolean or an object, got {type(value).__name__}")
    if "allowed" not in value:
        raise DecisionFormatError('missing "allowed" key')
    allowed = value["allowed"]
    if not isinstance(allowed, bool):
        raise DecisionFormatError('"allowed" must be a boolean')
    verdict = Verdict(allowed=allowed)
    if "headers" in value:
        verdict.headers = _headers(value["headers"], "headers")
    if "response_headers_to_add" in value:
        key = "response_headers_to_add"
        verdict.response_headers_to_add = _headers(value[key], key)
    if "request_headers_to_remove" in value:
        remove = value["request_headers_to_remove"]
        if not isinstance(remove, list) or not all(isinstance(h, str) for h in remove):
            raise DecisionFormatError("request_headers_to_remove: expected a list of header names")
        verdict.request_headers_to_remove = [h.lower() for h in remove]
    if "http_status" in value:
        status = value["http_status"]
        if isinstance(status, bool) or not isinstance(status, int | float) or int(status) != status:
            raise DecisionFormatError("http_status: expected an integer")
        if not 100 <= int(status) <= 599:
            raise DecisionFormatError(f"http_status: {int(status)} is not an HTTP status")
        verdict.http_status = int(status)
    if "body" in value:
        if not isinstance(value["body"], str):
            raise DecisionFormatError("body: expected a string")
        verdict.body = value["body"]
    if "dynamic_metadata" in value:
        meta = value["dynamic_metadata"]
        if not isinstance(meta, Mapping):
            raise DecisionFormatError("dynamic_metadata: expected an object")
        verdict.dynamic_metadata = dict(meta)
    return verdict
