"""The canonical spelling of a text, for detecting secrets however they were encoded.

A detector that reads ``a%40b.io``, ``&#64;`` or full-width digits (U+FF11…) literally
finds nothing, so masking first rewrites a text the way its readers will:

* percent-encoding, up to two rounds (``%2540`` is ``%40`` is ``@``);
* HTML character references (``&#64;``, ``&commat;``, ``&#x34;``);
* Unicode NFKC (full-width digits and letters, ligatures, superscripts);
* invisible format characters (zero-width spaces and joiners, soft hyphens)
  removed, so they cannot split a card number or a key name.

Base64 is not decoded: almost any token-like string decodes to something, so
it would cost every string a decode and find little; a base64 secret under a
secret key (``password``, ``token`` …) is masked by its key all the same.
"""

from __future__ import annotations

import html
import re
import unicodedata
from urllib.parse import unquote

__all__ = ["canonical"]

_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});?")
_PERCENT_ROUNDS = 2


def _drop_format_chars(text: str) -> str:
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


def canonical(text: str) -> str:
    """``text`` decoded as above; the same object when there was nothing to decode (the usual case)."""
    out = text
    for _ in range(_PERCENT_ROUNDS + 1):
        before = out
        if "%" in out and _PERCENT.search(out):
            out = unquote(out)
        if "&" in out and _ENTITY.search(out):
            out = html.unescape(out)
        if not out.isascii():
            out = _drop_format_chars(unicodedata.normalize("NFKC", out))
        if out == before:
            break
    return out
