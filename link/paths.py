"""One reading of a request path for every transport: the path Envoy forwards is the path Link decides on.

Envoy's front listener normalizes paths (``normalize_path``, ``merge_slashes``, escaped slashes
refused; see docs/adr/0006-paths-normalization.md). :func:`normalize_path` applies the same
transformation, so a path Envoy already normalized comes back unchanged, and a path from a transport
that did not pass through Envoy (MCP, a test, a misconfigured listener) is read the same way:

* ``\\`` is a ``/``; percent-encoded unreserved characters (``%2e``, ``%41``, ``%7E``) are decoded;
* RFC 3986 §5.2.4 dot segments are removed (``..`` above the root is dropped), then runs of ``/``
  are merged;
* everything else keeps its spelling (no case normalization of percent hex, no re-encoding).

A path that the gateway behind Envoy could read differently from Link is refused with
:class:`PathRefused` (the pipeline turns it into a 400): control characters, raw characters RFC 3986
does not allow in a path, invalid percent-encoding, encoded slashes, backslashes or control
characters, double-encoded separators (``%252e``), bytes that are not UTF-8 (overlong ``%c0%ae``),
and ``;`` path parameters (servlet containers strip ``;…`` from segments, so ``/a/..;/b`` is
``/b`` to them).
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

__all__ = ["PathRefused", "normalize_path"]

# A path made only of these, with no "//" and no segment starting with ".", is already normal.
# (One character class and two substring tests: about half the cost of a single alternation.)
_UNUSUAL = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,=:@/]").search
# Anything but RFC 3986 pchar, "/" and the two characters the slow path interprets ("%" and "\").
_NOT_RAW = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/%\\]")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_HIGH_BYTE = re.compile(r"%[89A-Fa-f][0-9A-Fa-f]")
# "%25" followed by the encoding of a byte that changes the path's shape once a second decoder runs.
_DOUBLE_ENCODED = re.compile(r"%25(?:2[eEfF5]|5[cC]|3[bB]|[01][0-9a-fA-F]|7[fF])")
_MULTI_SLASH = re.compile(r"/{2,}")


class PathRefused(ValueError):
    """A path that cannot be read one way only; ``reason`` is a machine code, ``message`` safe for clients."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def normalize_path(path: str) -> str:
    """The normalized form of ``path`` (no query string), or :class:`PathRefused`.

    Idempotent: ``normalize_path(normalize_path(p)) == normalize_path(p)``; the result never has a
    ``.`` or ``..`` segment, a ``//``, a ``\\`` or an encoded unreserved character.
    """
    if path[:1] == "/" and "//" not in path and "/." not in path and _UNUSUAL(path) is None:
        return path  # the common case: one scan, no allocation
    return _normalize_slow(path)


def _normalize_slow(path: str) -> str:
    bad = _NOT_RAW.search(path)
    if bad is not None:
        ch = bad.group()
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise PathRefused("path_control_character", "the path contains a control character")
        raise PathRefused("path_invalid_character", f"the path contains {ch!r}, which must be percent-encoded")
    path = path.replace("\\", "/")
    if not path.startswith("/"):
        raise PathRefused("path_not_absolute", "the path must start with '/'")
    if "%" in path:
        path = _decode_unreserved(path)
    if ";" in path:
        raise PathRefused("path_parameters", "';' path parameters are not accepted")
    return _MULTI_SLASH.sub("/", _remove_dot_segments(path))


def _decode_unreserved(path: str) -> str:
    """Decode %XX of unreserved characters; refuse every percent sequence that is not plain data."""
    if _BAD_PERCENT.search(path):
        raise PathRefused("path_invalid_percent_encoding", "the path has a '%' not followed by two hex digits")
    decoded = _PERCENT.sub(_decode_one, path)
    if _HIGH_BYTE.search(decoded):
        try:
            unquote_to_bytes(decoded).decode("utf-8")
        except UnicodeDecodeError:
            raise PathRefused("path_invalid_utf8", "the decoded path is not valid UTF-8") from None
    # Checked on the result: "%25%32%65" decodes (unreserved only) to "%252e", itself a double encoding.
    if _DOUBLE_ENCODED.search(decoded):
        raise PathRefused("path_double_encoding", "the path has a double-encoded separator")
    return decoded


def _decode_one(match: re.Match[str]) -> str:
    byte = int(match.group(1), 16)
    if byte in _UNRESERVED:
        return chr(byte)
    if byte in (0x2F, 0x5C):
        raise PathRefused("path_encoded_slash", "encoded '/' or '\\' in the path")
    if byte < 0x20 or byte == 0x7F:
        raise PathRefused("path_control_character", "the path contains an encoded control character")
    return match.group()


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 on an absolute path: ``.`` and ``..`` go, ``..`` at the root is dropped."""
    segments = path.split("/")[1:]
    out: list[str] = []
    last = len(segments) - 1
    for i, segment in enumerate(segments):
        if segment == ".":
            if i == last:
                out.append("")
        elif segment == "..":
            if out:
                out.pop()
            if i == last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)
