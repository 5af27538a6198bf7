"""Reading a policy's answer the way OPA-Envoy does.

The answer is a boolean or an object. Of the object, ``allowed`` (a boolean) is
required; ``headers`` go to the upstream when allowed and to the client when
refused; ``dynamic_metadata`` is kept either way. Only an allowed request reads
``response_headers_to_add``, ``request_headers_to_remove``,
``query_parameters_to_set`` and ``query_parameters_to_remove``; only a refused
one reads ``http_status`` (default 403) and ``body`` (default empty). A field of
the other branch is not looked at, as in OPA-Envoy, so it cannot make an
answer invalid.

Header and query values are a string or a list of strings; a list gives one
entry per value, in order, exactly as OPA-Envoy hands them to Envoy. A refusal's
status must be one of Envoy's ``StatusCode`` values (OPA-Envoy refuses any
other). An undefined answer, or one OPA-Envoy would not accept, raises
:class:`DecisionFormatError`: the policy could not decide.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ENVOY_STATUS_CODES", "DecisionFormatError", "UndefinedDecision", "Verdict", "read_verdict"]

_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

# The values of Envoy's envoy.type.v3.StatusCode (without Empty = 0); every one is also a status
# Go's net/http names, which OPA-Envoy checks too. Kept here so the policy layer needs no Envoy types
# (a unit test compares it with the enum).
ENVOY_STATUS_CODES: frozenset[int] = frozenset({
    100,
    200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
    300, 301, 302, 303, 304, 305, 307, 308,
    400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417,
    421, 422, 423, 424, 426, 428, 429, 431,
    500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511,
})

Pairs = list[tuple[str, str]]


class DecisionFormatError(ValueError):
    """The policy answered something OPA-Envoy would not accept."""


class UndefinedDecision(DecisionFormatError):
    """The query had no value (OPA-Envoy: "undefined decision")."""


@dataclass(slots=True)
class Verdict:
    """A policy answer, read. Header and query lists keep order and repetition."""

    allowed: bool
    # True when the answer is an object (OPA-Envoy then sends a denied response of its own).
    structured: bool = False
    http_status: int = 403
    headers: Pairs = field(default_factory=list)
    response_headers_to_add: Pairs = field(default_factory=list)
    request_headers_to_remove: list[str] = field(default_factory=list)
    query_parameters_to_set: Pairs = field(default_factory=list)
    query_parameters_to_remove: list[str] = field(default_factory=list)
    body: str = ""
    dynamic_metadata: dict[str, Any] = field(default_factory=dict)


def _strings(raw: Any, where: str) -> list[str]:
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and all(isinstance(v, str) for v in raw):
        return raw
    raise DecisionFormatError(f"{where}: expected a string or a list of strings")


def _headers(value: Any, key: str) -> Pairs:
    items: list[Mapping[str, Any]]
    if isinstance(value, Mapping):
        items = [value]
    elif isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
        items = value
    else:
        raise DecisionFormatError(f"{key}: expected an object of header names to values")
    out: Pairs = []
    for mapping in items:
        for name, raw in mapping.items():
            # Stricter than OPA-Envoy, which passes any name on: Envoy would drop or refuse these anyway.
            if not isinstance(name, str) or not _HEADER_NAME.match(name):
                raise DecisionFormatError(f"{key}: {name!r} is not a valid header name")
            values = _strings(raw, f"{key}.{name}")
            if any("\n" in v or "\r" in v or "\0" in v for v in values):
                raise DecisionFormatError(f"{key}.{name}: header values are single-line")
            lower = name.lower()
            out.extend((lower, v) for v in values)
    return out


def _names(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(h, str) for h in value):
        raise DecisionFormatError(f"{key}: expected a list of strings")
    return list(value)


def _query_to_set(value: Any) -> Pairs:
    key = "query_parameters_to_set"
    if not isinstance(value, Mapping):
        raise DecisionFormatError(f"{key}: expected an object of parameter names to values")
    out: Pairs = []
    for name, raw in value.items():
        out.extend((str(name), v) for v in _strings(raw, f"{key}.{name}"))
    return out


def _status(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise DecisionFormatError("http_status: expected an integer")
    status = int(value)
    if status not in ENVOY_STATUS_CODES:
        raise DecisionFormatError(f"http_status: {status} is not one of Envoy's status codes")
    return status


def read_verdict(value: Any, *, undefined: bool = False) -> Verdict:
    """Turn the query's value into a :class:`Verdict`; raises :class:`DecisionFormatError`."""
    if undefined:
        raise UndefinedDecision("undefined decision")
    if isinstance(value, bool):
        return Verdict(allowed=value)
    if not isinstance(value, Mapping):
        raise DecisionFormatError(f"expected a boolean or an object, got {type(value).__name__}")
    if "allowed" not in value:
        raise DecisionFormatError('missing "allowed" key')
    allowed = value["allowed"]
    if not isinstance(allowed, bool):
        raise DecisionFormatError('"allowed" must be a boolean')
    verdict = Verdict(allowed=allowed, structured=True)
    if "headers" in value:
        verdict.headers = _headers(value["headers"], "headers")
    if "dynamic_metadata" in value:
        meta = value["dynamic_metadata"]
        if not isinstance(meta, Mapping):
            raise DecisionFormatError("dynamic_metadata: expected an object")
        verdict.dynamic_metadata = dict(meta)
    if allowed:
        if "response_headers_to_add" in value:
            key = "response_headers_to_add"
            verdict.response_headers_to_add = _headers(value[key], key)
        if "request_headers_to_remove" in value:
            key = "request_headers_to_remove"
            verdict.request_headers_to_remove = [h.lower() for h in _names(value[key], key)]
        if "query_parameters_to_set" in value:
            verdict.query_parameters_to_set = _query_to_set(value["query_parameters_to_set"])
        if "query_parameters_to_remove" in value:
            key = "query_parameters_to_remove"
            verdict.query_parameters_to_remove = _names(value[key], key)
        return verdict
    if "http_status" in value:
        verdict.http_status = _status(value["http_status"])
    if "body" in value:
        if not isinstance(value["body"], str):
            raise DecisionFormatError("body: expected a string")
        verdict.body = value["body"]
    return verdict
