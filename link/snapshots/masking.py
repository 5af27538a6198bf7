"""Sanitising what an error snapshot stores: headers, URLs and body excerpts.

Three layers, strictest first:

1. secret headers (``authorization``, ``cookie`` …) and headers whose name holds a
   masked key are never stored: their value becomes ``[REDACTED]``;
2. values under configured keys (``password``, ``token`` …) are replaced whole, in
   JSON bodies (recursively), form bodies, query strings, XML, JSON-looking text and
   phrases (``password is …``, ``PIN: …``). Key names match by word, whatever the
   spelling: case, ``-``/``_``, camelCase, prefixes (``x-api-key``, ``newPassword``,
   ``user_password``);
3. everything else goes through the PII detectors (:mod:`.detectors`).

Detection reads the canonical spelling of a text (:func:`.decoding.canonical`:
percent-encoding, HTML references, NFKC, invisible characters). A text in which
something was masked is stored in that decoded spelling; any other text is stored
as it came.

Bodies are excerpts and may be cut mid-document; a JSON excerpt that no longer
parses is masked as text, with key-based masking done by pattern instead.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from link.snapshots.decoding import canonical
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
_SUFFIX_KEY_MIN = 5  # key words this long also match at the end of a longer word
# Bigger than any excerpt we keep, smaller than a decompression bomb.
_MAX_INFLATED = 1 << 20


def _norm(key: str) -> str:
    """``API-Key``, ``api_key`` and ``apiKey`` all become ``apikey``."""
    return re.sub(r"[^a-z0-9]", "", key.lower())


_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def _words(key: str) -> list[str]:
    """``newPassword`` -> new, Password; ``X_API_KEY`` -> X, API, KEY; ``APIKey`` -> API, Key."""
    return [w for w in _WORD_SPLIT.split(key) if w]


# key=value in query strings, form bodies and log-like text.
_KV_PAIR = re.compile(r"(?<![A-Za-z0-9_.-])([A-Za-z][A-Za-z0-9_.\-\[\]]{0,63})(\s?=\s?)([^&\s\"',;]*)")
# "password": "…" / 'token': 123 in text that is JSON-ish but does not parse (cut excerpts).
_JSON_PAIR = re.compile(
    r"""(["'])([^"'\\\n]{1,64})\1(\s*:\s*)("(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?|[^,}\]\s]+)"""
)
# <password>…</password> in XML and SOAP bodies (the tag's namespace prefix is ignored).
_XML_PAIR = re.compile(r"<((?:[A-Za-z0-9_.-]+:)?([A-Za-z0-9_.-]{1,64}))((?:\s[^>]*)?>)([^<]*)")
# "password is hunter2", "my PIN: 1234", "api key = …": one or two words, a connector, a value.
_PHRASE = re.compile(
    r"(?i)(?<![A-Za-z0-9_-])([A-Za-z][A-Za-z0-9_-]{0,40}(?: [A-Za-z][A-Za-z0-9_-]{0,40})?)"
    r"(\s*(?:\bis\b|\bwas\b|\bset to\b|:|=>|->|=)\s*)"
    r"(\"[^\"]*\"?|'[^']*'?|[^\s,;.]+(?:\.[^\s,;.]+)*)"
)
# Words after "password is" that describe it rather than being it.
_NOT_A_VALUE = frozenset({
    "a", "an", "the", "not", "no", "too", "invalid", "expired", "missing", "required", "wrong",
    "incorrect", "empty", "null", "none", "valid", "set", "present", "absent", "revoked", "malformed",
    "unknown", "weak", "strong", "short", "long", "needed", "optional", "reset", "changed", "ok",
})


class PiiMasker:
    """Masks PII and secrets; every method adds the kinds it found to ``found``.

    The API shadow mode reuses: ``mask_text``, ``mask_json``, ``mask_headers``, ``mask_url``,
    ``mask_body`` and ``is_masked_key``; nothing else is needed to mask a captured exchange.
    """

    def __init__(self, mask_keys: Iterable[str] = (), secret_headers: Iterable[str] = SECRET_HEADERS) -> None:
        self._secret_headers = frozenset(h.lower() for h in secret_headers)
        # A secret header's value is as secret when a body carries it (echoes, debug dumps, logs).
        keys = [k for k in (*mask_keys, *self._secret_headers) if k.strip()]
        self._keys = frozenset(k for k in (_norm(canonical(k)) for k in keys) if k)
        self._key_cache: dict[str, bool] = {}
        self._suffix_keys = tuple(k for k in self._keys if len(k) >= _SUFFIX_KEY_MIN)
        # Key words as one search: text without any of them needs no pair matching at all.
        words = sorted({re.escape(w) for k in keys for w in _words(k)} | {re.escape(k) for k in self._keys},
                       key=len, reverse=True)
        self._names = re.compile("(?i:" + "|".join(words) + ")") if words else None
        # One search tells whether a string needs any work at all (most JSON values do not).
        self._quick = re.compile(QUICK_CHECK.pattern + (r"|" + self._names.pattern if self._names else ""))

    # -- keys --------------------------------------------------------------------------------
    def is_masked_key(self, key: str) -> bool:
        """True when values under ``key`` are secret (``client_secret`` is, ``secretary`` is not)."""
        cached = self._key_cache.get(key)
        if cached is None:
            cached = self._is_masked_key(canonical(key))
            if len(self._key_cache) < _KEY_CACHE_MAX:  # bodies repeat their keys; bound it all the same
                self._key_cache[key] = cached
        return cached

    def _is_masked_key(self, key: str) -> bool:
        norm = _norm(key)
        if not norm:
            return False
        if norm in self._keys:
            return True
        # Compound names: x_client_secret, userPassword, refresh-token-value, NEW_PIN.
        lowered = [w.lower() for w in _words(key)]
        for i in range(len(lowered)):
            for j in range(i + 1, len(lowered) + 1):
                if "".join(lowered[i:j]) in self._keys:
                    return True
        # Names whose word boundaries were lost (HTTP/2 lower-cases headers: "newpassword"): a long
        # key word may end a word. Only long ones: "pin" ends "spin", "secret" does not end "secretary".
        return any(w.endswith(k) for w in (*lowered, norm) for k in self._suffix_keys)

    # -- text --------------------------------------------------------------------------------
    def mask_text(self, text: str, found: set[str]) -> str:
        """Key=value secrets and phrases, then PII detectors, on the decoded text.

        Returns ``text`` unchanged when nothing was found, else the decoded text masked.
        """
        if not text:
            return text
        decoded = canonical(text)
        if self._quick.search(decoded) is None:
            return text
        kinds: set[str] = set()
        masked = mask_text(self._mask_pairs(decoded, kinds), kinds)
        if not kinds:
            return text
        found |= kinds
        return masked

    def _mask_pairs(self, text: str, found: set[str]) -> str:
        if self._names is None or self._names.search(text) is None:
            return text
        hit = False

        def _json(m: re.Match[str]) -> str:
            nonlocal hit
            if not self.is_masked_key(m.group(2)):
                return m.group(0)
            value = m.group(4)
            quote = value[0] if value[:1] in ("'", '"') else ""
            if value.strip(quote) == "":
                return m.group(0)
            hit = True
            return f"{m.group(1)}{m.group(2)}{m.group(1)}{m.group(3)}{quote}{MASKED}{quote}"

        def _kv(m: re.Match[str]) -> str:
            nonlocal hit
            if not m.group(3) or not self.is_masked_key(m.group(1)):
                return m.group(0)
            hit = True
            return f"{m.group(1)}{m.group(2)}{MASKED}"

        def _xml(m: re.Match[str]) -> str:
            nonlocal hit
            if not m.group(4).strip() or not self.is_masked_key(m.group(2)):
                return m.group(0)
            hit = True
            return f"<{m.group(1)}{m.group(3)}{MASKED}"

        def _phrase(m: re.Match[str]) -> str:
            nonlocal hit
            value = m.group(3)
            if value.strip("\"'").lower() in _NOT_A_VALUE or not value.strip("\"'"):
                return m.group(0)
            words = m.group(1).split(" ")
            # "my password", "api key", "the PIN": the last word, or the last two as one name.
            names = [words[-1], "_".join(words[-2:])] if len(words) > 1 else words
            if not any(self.is_masked_key(n) for n in names):
                return m.group(0)
            hit = True
            quote = value[0] if value[:1] in ("'", '"') else ""
            return f"{m.group(1)}{m.group(2)}{quote}{MASKED}{quote}"

        if ":" in text and ('"' in text or "'" in text):
            text = _JSON_PAIR.sub(_json, text)
        if "=" in text:
            text = _KV_PAIR.sub(_kv, text)
        if "<" in text:
            text = _XML_PAIR.sub(_xml, text)
        text = _PHRASE.sub(_phrase, text)
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
        path = "/".join(self.mask_text(seg, found) for seg in path.split("/"))
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
        return self.mask_text(text, found)


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
