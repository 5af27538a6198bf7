"""Sanitising what an error snapshot stores: headers, URLs and body excerpts.

Three layers, strictest first:

1. secret headers (``authorization``, ``cookie`` …) and headers whose name holds a
   masked key are never stored: their value becomes ``[REDACTED]``;
2. values under configured keys (``password``, ``token`` …) are replaced whole, in
   JSON bodies (recursively), form bodies, query strings and JSON-looking text;
3. everything else goes through the PII detectors (:mod:`.detectors`).

Bodies are excerpts and may be cut mid-document; a JSON excerpt that no longer
parses is masked as text, with key-based masking done by pattern instead.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

from link.snapshots.detectors import QUICK_CHECK, luhn_valid, mask_text

__all__ = ["REDACTED", "SECRET_HEADERS", "PiiMasker"]

REDACTED = "[REDACTED]"
MASKED = "[masked]"
SECRET_HEADERS = frozenset(
    {"authorization", "cookie", "set-cookie", "proxy-authorization", "x-api-key", "x-auth-token"}
)
# What an excerpt's cut may leave of an e-mail address or a long number.
_CUT_TAIL = re.compile(r"(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9.-]*|[0-9][0-9 .-]{5,})$")
_KEY_CACHE_MAX = 4096
# Bigger than any excerpt we keep, smaller than a decompression bomb.
_MAX_INFLATED = 1 << 20


def _norm(key: str) -> str:
    """``API-Key``, ``api_key`` and ``apiKey`` all become ``apikey``."""
    return re.sub(r"[^a-z0-9]", "", key.lower())


class PiiMasker:
    """Masks PII and secrets; every method adds the kinds it found to ``found``."""

    def __init__(self, mask_keys: Iterable[str] = (), secret_headers: Iterable[str] = SECRET_HEADERS) -> None:
        self._secret_headers = frozenset(h.lower() for h in secret_headers)
        # A secret header's value is as secret when a body carries it (echoes, debug dumps, logs).
        keys = [k for k in (*mask_keys, *self._secret_headers) if k.strip()]
        self._keys = frozenset(k for k in (_norm(k) for k in keys) if k)
        self._key_cache: dict[str, bool] = {}
        names = "|".join(sorted({re.escape(k) for k in keys}, key=len, reverse=True))
        # "password": "…" / 'token': 123 in text that is JSON-ish but does not parse (cut excerpts).
        self._json_pair = (
            re.compile(
                r"""(?i)(["'](?:[A-Za-z0-9_-]*?)(?:""" + names + r""")["']\s*:\s*)"""
                r"""("(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?|[^,}\]\s]+)"""
            )
            if names
            else None
        )
        # password=… in query strings, form bodies and log-like text.
        self._kv_pair = (
            re.compile(r"(?i)(\b[A-Za-z0-9_-]*?(?:" + names + r")=)([^&\s\"',;]*)") if names else None
        )
        # <password>…</password> in XML and SOAP bodies.
        self._xml_pair = (
            re.compile(r"(?i)(<[A-Za-z0-9_:-]*?(?:" + names + r")(?:\s[^>]*)?>)([^<]*)") if names else None
        )
        # One search tells whether a string needs any work at all (most JSON values do not).
        self._quick = re.compile(QUICK_CHECK.pattern + (r"|(?i:" + names + ")" if names else ""))

    # -- keys --------------------------------------------------------------------------------
    def is_masked_key(self, key: str) -> bool:
        """True when values under ``key`` are secret (``client_secret`` is, ``secretary`` is not)."""
        cached = self._key_cache.get(key)
        if cached is None:
            cached = self._is_masked_key(key)
            if len(self._key_cache) < _KEY_CACHE_MAX:  # bodies repeat their keys; bound it all the same
                self._key_cache[key] = cached
        return cached

    def _is_masked_key(self, key: str) -> bool:
        norm = _norm(key)
        if not norm:
            return False
        if norm in self._keys:
            return True
        # Compound names: x_client_secret, userPassword, refresh-token-value.
        parts = [p for p in re.split(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])", key) if p]
        lowered = [p.lower() for p in parts]
        for i in range(len(lowered)):
            for j in range(i + 1, len(lowered) + 1):
                if "".join(lowered[i:j]) in self._keys:
                    return True
        return False

    # -- text --------------------------------------------------------------------------------
    def mask_text(self, text: str, found: set[str]) -> str:
        """Key=value secrets, then PII detectors."""
        if not text or self._quick.search(text) is None:
            return text
        text = self._mask_pairs(text, found)
        return mask_text(text, found)

    def _mask_pairs(self, text: str, found: set[str]) -> str:
        hit = False

        def _json(m: re.Match[str]) -> str:
            nonlocal hit
            hit = True
            value = m.group(2)
            quote = value[0] if value[:1] in ("'", '"') else ""
            return f"{m.group(1)}{quote}{MASKED}{quote}"

        def _kv(m: re.Match[str]) -> str:
            nonlocal hit
            if not m.group(2):
                return m.group(0)
            hit = True
            return f"{m.group(1)}{MASKED}"

        if self._json_pair is not None and (":" in text):
            text = self._json_pair.sub(_json, text)
        if self._kv_pair is not None and "=" in text:
            text = self._kv_pair.sub(_kv, text)
        if self._xml_pair is not None and "<" in text:
            text = self._xml_pair.sub(_kv, text)
        if hit:
            found.add("secret")
        return text

    # -- structured values -------------------------------------------------------------------
    def mask_json(self, value: Any, found: set[str]) -> Any:
        """A JSON value with secrets under masked keys replaced whole and PII masked in strings."""
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for k, v in value.items():
                key = self.mask_text(k, found)
                if self.is_masked_key(k) and v not in (None, "", [], {}):
                    found.add("secret")
                    out[key] = MASKED
                else:
                    out[key] = self.mask_json(v, found)
            return out
        if isinstance(value, list):
            return [self.mask_json(v, found) for v in value]
        if isinstance(value, str):
            return self.mask_text(value, found)
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**12:
            # A card number sent as a JSON number (the only PII a bare integer can be).
            digits = str(abs(value))
            if 13 <= len(digits) <= 19 and luhn_valid(digits):
                found.add("card")
                return "[card]"
        return value

    def mask_headers(self, headers: Mapping[str, str], found: set[str]) -> dict[str, str]:
        """Secret headers -> ``[REDACTED]``; other values masked like text.

        The standard secret headers are always redacted and not reported as found (every
        authenticated request has one); a custom header named like a masked key is.
        """
        out: dict[str, str] = {}
        for name, value in headers.items():
            lname = name.lower()
            if lname in self._secret_headers:
                out[lname] = REDACTED
            elif self.is_masked_key(lname):
                if value:
                    found.add("secret")
                out[lname] = REDACTED
            elif lname == ":path":
                out[lname] = self.mask_url(value, found)
            else:
                out[lname] = self.mask_text(value, found)
        return out

    def mask_url(self, url: str, found: set[str]) -> str:
        """A path with optional query string: secrets in the query masked, PII anywhere."""
        path, sep, query = url.partition("?")
        # Segment by segment, so an address in one segment cannot swallow the ones before it.
        path = "/".join(self.mask_text(unquote(seg) if "%" in seg else seg, found) for seg in path.split("/"))
        if not sep:
            return path
        return f"{path}?{self._mask_form(query, found)}"

    def _mask_form(self, query: str, found: set[str]) -> str:
        pairs = parse_qsl(query, keep_blank_values=True)
        masked: list[tuple[str, str]] = []
        for k, v in pairs:
            if self.is_masked_key(k) and v:
                found.add("secret")
                masked.append((self.mask_text(k, found), MASKED))
            else:
                masked.append((self.mask_text(k, found), self.mask_text(v, found)))
        return urlencode(masked, safe="[]@:/ ")

    # -- bodies ------------------------------------------------------------------------------
    def mask_body(self, body: bytes, headers: Mapping[str, str], truncated: bool, found: set[str]) -> str:
        """The stored text of a body excerpt (never raw bytes: binary is summarised)."""
        text = self._mask_body(body, headers, truncated, found)
        if truncated or len(text) != len(body):
            # The cut may leave half an address or card number that no detector recognises.
            text = _CUT_TAIL.sub("[truncated]", text)
        return text

    def _mask_body(self, body: bytes, headers: Mapping[str, str], truncated: bool, found: set[str]) -> str:
        if not body:
            return ""
        encoding = headers.get("content-encoding", "").lower().strip()
        if encoding in ("gzip", "deflate"):
            inflated = _inflate(body, encoding)
            if inflated is None:
                return f"[{encoding} body, {len(body)} bytes]"
            body = inflated
        elif encoding not in ("", "identity"):
            return f"[{encoding} body, {len(body)} bytes]"
        text = _decode_text(body)
        if text is None:
            return f"[binary body, {len(body)} bytes]"
        ctype = headers.get("content-type", "").lower()
        stripped = text.lstrip()
        if "json" in ctype or stripped[:1] in ("{", "["):
            if not truncated:
                try:
                    doc = json.loads(text)
                except ValueError:
                    pass
                else:
                    return json.dumps(self.mask_json(doc, found), ensure_ascii=False, separators=(",", ":"))
            return self.mask_text(text, found)
        if "x-www-form-urlencoded" in ctype:
            return self._mask_form(text, found)
        # An encoded '@' would hide an e-mail address from the detectors.
        return self.mask_text(unquote(text) if "%40" in text else text, found)


def _inflate(body: bytes, encoding: str) -> bytes | None:
    """Decompress what an excerpt holds (it may be cut; a partial result is fine)."""
    wbits = 31 if encoding == "gzip" else 15
    for bits in (wbits, -15):
        try:
            d = zlib.decompressobj(bits)
            return d.decompress(body, _MAX_INFLATED)
        except zlib.error:
            continue
    return None


def _decode_text(body: bytes) -> str | None:
    """UTF-8 text, or None when the bytes are clearly not text."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        # An excerpt may end inside a multi-byte character.
        if exc.start >= len(body) - 3:
            return body[: exc.start].decode("utf-8", "replace")
    text = body.decode("utf-8", "replace")
    if text.count("\ufffd") > len(text) // 20 or "\x00" in text:
        return None
    return text
