"""One bounded JSON loader for every untrusted document Link and the MCP server parse.

``json.loads`` recurses once per nesting level, so ``[`` x 100,000 raises
``RecursionError`` (an HTTP 500 wherever it escapes); it also turns
``1e999999`` into ``inf``, accepts ``NaN``, lone surrogates (which later fail
to encode) and duplicate keys (last wins, while another parser may keep the
first: a parser differential). :func:`loads` refuses all of these with one
typed error, :class:`JsonRefused`, that callers answer with a 4xx.

Fast path: a document cannot nest deeper than it has ``[`` and ``{``, and
``bytes.count`` is a C loop, so ordinary documents go straight to the C
decoder. Only documents with more brackets than the depth limit get the exact
depth check (strings removed, then matched pairs peeled once per level, all
in C string operations: about 10 ms for 4 MiB of brackets).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_DEPTH", "JsonRefused", "loads", "nesting_depth_exceeds",
           "value_depth_exceeds"]

# Deep enough for any real API document, shallow enough that code walking the result recursively
# (jsonschema, serialisers) stays far from Python's recursion limit.
DEFAULT_MAX_DEPTH = 64
DEFAULT_MAX_BYTES = 4 << 20

# Everything but brackets and quotes goes first (cheap), so the split on quotes handles few bytes.
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
# Depth does not depend on the kind of bracket (a mismatched kind is a syntax error json.loads reports
# where it stops reading): one kind lets a single replace peel exactly one level per pass.
_ONE_KIND = bytes.maketrans(b"[{]}", b"(())")
_PEEL_PASSES = 8
_RUN = re.compile(rb"\(+|\)+")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_BOM = b"\xef\xbb\xbf"


class JsonRefused(ValueError):
    """A document the loader will not accept; ``reason`` is a short machine code, the message says why.

    Reasons: ``too_large``, ``too_deep``, ``invalid_json``, ``invalid_utf8``, ``bom``,
    ``non_finite_number``, ``number_too_long``, ``lone_surrogate``, ``duplicate_key``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def nesting_depth_exceeds(raw: bytes, max_depth: int) -> bool:
    """True when ``raw`` nests arrays/objects deeper than ``max_depth`` (or its brackets cannot balance)."""
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return False
    # Outside strings only: drop escaped backslashes, then escaped quotes (left to right, as a
    # decoder reads them), and keep the even pieces between the remaining quotes. Up to the first
    # syntax error (where json.loads stops reading) this is exact.
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"") if b"\\" in raw else raw
    kept = unescaped.translate(_ONE_KIND, _NOT_STRUCTURE)
    # Two adjacent quotes delimit nothing but string content (an empty string, or the end of one and
    # the start of the next with nothing between): dropping them keeps every later quote's parity.
    kept = kept.replace(b'""', b"")
    brackets = b"".join(kept.split(b'"')[::2]) if b'"' in kept else kept
    # Peel the shallow levels in C (one level per pass; pairs formed by a removal wait a pass) ...
    peeled_levels = min(max_depth, _PEEL_PASSES)
    for _ in range(peeled_levels):
        if not brackets:
            return False
        brackets = brackets.replace(b"()", b"")
    if not brackets:
        return False
    # ... then follow the depth run by run: each run left stands for a branch longer than the peeled
    # levels, so there are few of them, however the document is shaped.
    limit = max_depth - peeled_levels
    depth = 0
    for run in _RUN.finditer(brackets):
        size = run.end() - run.start()
        depth += size if brackets[run.start()] == 40 else -size  # 40 = "("
        if depth > limit or depth < 0:
            return True
    return depth != 0


def value_depth_exceeds(value: Any, max_depth: int) -> bool:
    """True when an already-parsed value (dicts and lists) nests deeper than ``max_depth``.

    For documents another parser built (e.g. the MCP SDK's, whose own limit is higher); iterative,
    so it cannot recurse whatever the value.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth + 1 > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list | tuple))
    return False


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRefused("non_finite_number", f"number {text[:20]}... is out of range")
    return value


def _constant(name: str) -> Any:
    raise JsonRefused("non_finite_number", f"{name} is not a JSON number")


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise JsonRefused("duplicate_key", f"duplicate key {key[:60]!r}")
            seen.add(key)
    return out


def _check_surrogates(value: Any) -> None:
    """Walk the (already depth-bounded) document for strings holding unpaired surrogates."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise JsonRefused("lone_surrogate", "a string holds an unpaired UTF-16 surrogate") from None
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_surrogates(k)
            _check_surrogates(v)
    elif isinstance(value, list):
        for v in value:
            _check_surrogates(v)


# json.loads with hooks builds a decoder per call; these two are built once (same settings).
_DECODERS = {
    False: json.JSONDecoder(parse_float=_finite_float, parse_constant=_constant),
    True: json.JSONDecoder(parse_float=_finite_float, parse_constant=_constant, object_pairs_hook=_unique_pairs),
}


def loads(
    raw: bytes | str,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_bytes: int = DEFAULT_MAX_BYTES,
    reject_duplicate_keys: bool = False,
) -> Any:
    """Parse UTF-8 JSON within the limits, or raise :class:`JsonRefused` saying why."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if len(data) > max_bytes:
        raise JsonRefused("too_large", f"the document is larger than {max_bytes} bytes")
    if data.startswith(_BOM):
        raise JsonRefused("bom", "the document starts with a byte order mark")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonRefused("invalid_utf8", f"not valid UTF-8 at byte {exc.start}") from None
    if nesting_depth_exceeds(data, max_depth):
        raise JsonRefused("too_deep", f"nested deeper than {max_depth} levels (or unbalanced brackets)")
    try:
        value = _DECODERS[reject_duplicate_keys].decode(text)
    except JsonRefused:
        raise
    except RecursionError:  # unreachable after the depth check; kept so no input can ever escape as a 500
        raise JsonRefused("too_deep", f"nested deeper than {max_depth} levels") from None
    except ValueError as exc:
        if "integer string conversion" in str(exc) or "Exceeds the limit" in str(exc):
            raise JsonRefused("number_too_long", "an integer has too many digits") from None
        raise JsonRefused("invalid_json", f"not valid JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(data) is not None:
        _check_surrogates(value)
    return value
