"""Hypothesis strategies for the PII the snapshot masking must catch."""

from __future__ import annotations

import base64
import json
import string

from hypothesis import strategies as st

from link.snapshots.detectors import IBAN_LENGTHS

_CARD_PREFIXES = ["4", "51", "52", "53", "54", "55", "2221", "2720", "34", "37", "6011", "65", "35", "36",
                  "62"]


def luhn_check_digit(body: str) -> str:
    """The digit that makes ``body + digit`` pass the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def _group(text: str, sep: str, size: int = 4) -> str:
    return sep.join(text[i : i + size] for i in range(0, len(text), size))


@st.composite
def card_numbers(draw: st.DrawFn) -> str:
    """A Luhn-valid card number of 13-19 digits, raw or grouped by 4 with spaces or dashes."""
    prefix = draw(st.sampled_from(_CARD_PREFIXES))
    length = draw(st.integers(13, 19))
    body = prefix + "".join(draw(st.lists(st.sampled_from(string.digits), min_size=length - 1 - len(prefix),
                                          max_size=length - 1 - len(prefix))))
    number = body + luhn_check_digit(body)
    sep = draw(st.sampled_from(["", " ", "-"]))
    return _group(number, sep) if sep else number


def iban_check_digits(country: str, bban: str) -> str:
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    return f"{98 - int(numeric) % 97:02d}"


@st.composite
def ibans(draw: st.DrawFn) -> str:
    """A checksum-valid IBAN of a registered country and length, compact or grouped by 4."""
    country = draw(st.sampled_from(sorted(IBAN_LENGTHS)))
    n = IBAN_LENGTHS[country] - 4
    chars = st.sampled_from(string.digits + string.ascii_uppercase)
    bban = "".join(draw(st.lists(chars, min_size=n, max_size=n)))
    iban = country + iban_check_digits(country, bban) + bban
    return _group(iban, " ") if draw(st.booleans()) else iban


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@st.composite
def jwts(draw: st.DrawFn) -> str:
    header = {"alg": draw(st.sampled_from(["RS256", "ES256", "HS256"])), "typ": "JWT"}
    claims = draw(st.dictionaries(st.sampled_from(["sub", "iss", "aud", "tenant", "scope"]),
                                  st.text(string.ascii_letters + string.digits, min_size=1, max_size=20),
                                  min_size=1))
    sig = draw(st.binary(min_size=32, max_size=64))
    return ".".join([_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), _b64(sig)])


# Opaque tokens: long enough that finding one by chance in the database is impossible.
opaque_tokens = st.text(string.ascii_letters + string.digits + "._~-", min_size=20, max_size=64).filter(
    lambda t: any(c.isdigit() for c in t) and any(c.isalpha() for c in t)
)

# Values of secret headers: random and long enough to be unique.
secret_values = st.text(string.ascii_letters + string.digits, min_size=16, max_size=40)
