"""The parts of OPA-Envoy's input computed from the request line and body, parsed as OPA-Envoy parses them.

OPA-Envoy builds ``parsed_path`` (path percent-decoded, then split on ``/``),
``parsed_query`` and ``parsed_body`` with Go's strict parsers: a bad escape, a
``;`` in the query, malformed JSON, form or multipart data make the input
impossible to build, and it answers 400 before any policy runs. These
functions follow the same rules and raise :class:`InputError` in the same
cases, so a policy never sees a half-parsed request.

``parsed_body`` is the JSON value (``application/json``), or a map of value
lists for ``application/x-www-form-urlencoded`` and ``multipart/form-data``
(a multipart part declared as JSON holds its parsed value). The media-type
tests are the same case-sensitive substring tests OPA-Envoy makes. A body cut
short by Envoy (``x-envoy-auth-partial-body: true``, or shorter than its
``Content-Length``) is not parsed: ``truncated_body`` is true.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, unquote_plus

from link import bodyjson, jsonsafe
from link.model import Request

__all__ = ["MAX_BODY_DEPTH", "InputError", "parse_body", "parse_path", "parse_query"]

# Deeper JSON is refused (400), with the bound every parser of untrusted JSON in Link uses
# (link.jsonsafe). OPA-Envoy (Go) accepts up to 10 000 levels; no real policy input comes close.
MAX_BODY_DEPTH = jsonsafe.DEFAULT_MAX_DEPTH

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class InputError(ValueError):
    """The request cannot be turned into OPA-Envoy's input document (answered 400, before the policy)."""


def _unescape(text: str, plus: bool, what: str) -> str:
    if "%" in text and _BAD_ESCAPE.search(text):
        raise InputError(f"invalid URL escape in {what}")
    if plus:
        return unquote_plus(text, errors="replace") if ("%" in text or "+" in text) else text
    return unquote(text, errors="replace") if "%" in text else text


def parse_path(path: str) -> list[str]:
    """``/people/1`` -> ``["people", "1"]``: decoded first, then split (so ``%2F`` splits, as in OPA-Envoy)."""
    return _unescape(path, False, "path").lstrip("/").split("/")


def parse_query(query: str, what: str = "query") -> dict[str, list[str]]:
    """Go's ``url.ParseQuery``: ``&``-separated, ``+`` is a space, blank values kept, ``;`` refused."""
    out: dict[str, list[str]] = {}
    if not query:
        return out
    for item in query.split("&"):
        if ";" in item:
            raise InputError(f"invalid semicolon separator in {what}")
        if not item:
            continue
        key, _, value = item.partition("=")
        key = _unescape(key, True, what)
        out.setdefault(key, []).append(_unescape(value, True, what))
    return out


def load_json(raw: bytes, what: str = "body", request: Request | None = None) -> Any:
    """One JSON value, strictly (no NaN, nothing after it), bounded (:mod:`link.jsonsafe`).

    With ``request`` (``raw`` is its body), the parse is the one the contract shares
    (:mod:`link.bodyjson`). Raises :class:`InputError`. Stricter than Go in two corners: invalid
    UTF-8 and unpaired surrogates are refused rather than replaced by U+FFFD.
    """
    try:
        if request is not None:
            return bodyjson.lenient(request, raw)
        return jsonsafe.loads(raw, max_bytes=max(len(raw), 1))
    except jsonsafe.JsonRefused as exc:
        if exc.reason == "too_deep":
            raise InputError(f"request {what} is nested too deeply (more than {MAX_BODY_DEPTH} levels)") from None
        raise InputError(f"request {what} is not valid JSON: {exc}") from None


def _truncated(request: Request, body: bytes) -> bool:
    declared = request.headers.get("content-length")
    if declared is None:
        return False
    try:
        length = int(declared.strip())
    except ValueError:
        raise InputError(f"invalid Content-Length {declared[:40]!r}") from None
    return length != -1 and length > len(body)


def _media_params(content_type: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in content_type.split(";")[1:]:
        part = part.strip()
        if not part:
            continue
        name, eq, value = part.partition("=")
        if not eq or not name.strip():
            raise InputError("mime: invalid media parameter in Content-Type")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[name.strip().lower()] = value
    return params


def _header_line(line: bytes, headers: dict[str, str]) -> None:
    name, colon, value = line.decode("utf-8", "replace").partition(":")
    if not colon or not name.strip():
        raise InputError("malformed multipart part header")
    headers[name.strip().lower()] = value.strip()


def _form_name(disposition: str) -> str:
    kind = disposition.split(";", 1)[0].strip().lower()
    if kind != "form-data":
        return ""
    return _media_params(disposition).get("name", "")


def _multipart(body: bytes, boundary: str) -> dict[str, list[Any]]:
    delimiter = b"--" + boundary.encode("utf-8", "replace")
    if body.startswith(delimiter):
        pos = 0
    else:  # a preamble may precede the first delimiter line
        found = body.find(b"\n" + delimiter)
        if found < 0:
            raise InputError("multipart body has no boundary")
        pos = found + 1
    values: dict[str, list[Any]] = {}
    while True:
        pos += len(delimiter)
        if body.startswith(b"--", pos):
            return values  # the closing delimiter
        eol = body.find(b"\n", pos)
        if eol < 0 or body[pos:eol].strip(b" \t\r"):
            raise InputError("malformed multipart delimiter line")
        cursor = eol + 1
        headers: dict[str, str] = {}
        while True:  # part headers, up to an empty line
            nl = body.find(b"\n", cursor)
            if nl < 0:
                raise InputError("multipart part has no end of headers")
            line = body[cursor:nl].rstrip(b"\r")
            cursor = nl + 1
            if not line:
                break
            _header_line(line, headers)
        end = body.find(b"\n" + delimiter, cursor)
        if end < 0:
            raise InputError("multipart body ends before its closing boundary")
        content = body[cursor:end - 1] if end > cursor and body[end - 1:end] == b"\r" else body[cursor:end]
        pos = end + 1
        name = _form_name(headers.get("content-disposition", ""))
        if not name:
            continue
        if "application/json" in headers.get("content-type", ""):
            values.setdefault(name, []).append(load_json(content, f"multipart part {name!r}"))
        else:
            values.setdefault(name, []).append(content.decode("utf-8", "replace"))


def parse_body(request: Request) -> tuple[Any, bool]:
    """``(parsed_body, truncated_body)`` as OPA-Envoy computes them; raises :class:`InputError`."""
    if request.body_truncated:
        return None, True
    content_type = request.headers.get("content-type")
    body = request.body
    if content_type is None or not body:
        return None, False
    if "application/json" in content_type:
        if _truncated(request, body):
            return None, True
        return load_json(body, request=request), False
    if "application/x-www-form-urlencoded" in content_type:
        if _truncated(request, body):
            return None, True
        return parse_query(body.decode("utf-8", "replace"), "form body"), False
    if "multipart/form-data" in content_type:
        if _truncated(request, body):
            return None, True
        boundary = _media_params(content_type).get("boundary")
        if not boundary:
            return None, False
        return _multipart(body, boundary), False
    return None, False
