"""Finding personal data and credentials in free text.

Each detector is a regular expression that finds candidates plus, where the
format has one, a checksum that confirms them (Luhn for card numbers, ISO 7064
mod 97 for IBANs), so order numbers and timestamps are not mistaken for PII.
:func:`mask_text` replaces every confirmed finding with a ``[kind]`` marker.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["IBAN_LENGTHS", "QUICK_CHECK", "iban_valid", "luhn_valid", "mask_text"]

# Registered IBAN lengths per country (ISO 13616 registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}


def luhn_valid(digits: str) -> bool:
    """The Luhn check every payment card number passes."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(compact: str) -> bool:
    """ISO 13616: registered length for the country and mod-97 remainder 1."""
    iban = compact.upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit() or not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


# -- candidate patterns -----------------------------------------------------------------------
# Tokens first: a JWT may contain digit runs that would otherwise look like card numbers.
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# "Bearer abc…" / "Basic …" credentials; the scheme word is kept.
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9._~+/=-]{6,})")
# Secrets whose shape gives them away even without a key name next to them.
_KNOWN_SECRET = re.compile(
    r"\b(?:[sprk]k_(?:live|test)_[A-Za-z0-9]{10,}|gh[pousr]_[A-Za-z0-9]{30,}|xox[abprs]-[A-Za-z0-9-]{10,}"
    r"|AKIA[0-9A-Z]{16}|sk-[A-Za-z0-9_-]{20,})"
)
# Local part: every character RFC 5322 allows unquoted, so no prefix of an address survives;
# bounded (RFC 5321: 64) so long runs without '@' cost linear time, not quadratic.
_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]"
)
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}(?:[ -]?[A-Za-z0-9]){11,32}")
# Groups may be separated by a space, '-' or '.' (as written on some receipts and forms).
_CARD = re.compile(r"(?<![0-9])[0-9](?:[ .-]?[0-9]){12,22}(?![0-9])")
_SSN = re.compile(r"(?<![0-9-])[0-9]{3}[- ][0-9]{2}[- ][0-9]{4}(?![0-9-])")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{1,4}\)[ .-]?)?[0-9]{1,5}(?:[ .-][0-9]{2,5}){1,5}(?![\w])"
    r"|(?<![\w+])\+[0-9]{8,15}(?![\w])"
)
_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
# Request ids (Envoy's x-request-id) are UUIDs, and about one in 150 has digit groups that read as a
# phone ("d313dac8-2553-4491-8100-ccfef2425da1"), pass Luhn as a card across its dashes, or start a
# checksum-valid IBAN in its last group. Each UUID is set aside before those detectors run (a private-use
# character stands in for it, which no digit-group pattern matches or runs across) and put back after.
# A text that holds private-use characters of its own is masked as it is, UUIDs included.
_UUID = re.compile(r"(?<![0-9A-Za-z-])[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}(?![0-9A-Za-z-])")
_STAND_IN = 0xE000  # the first of the private-use characters standing in for UUIDs
_STAND_INS = 0x1900  # how many there are (U+E000..U+F8FF); UUIDs past that many are left in place
_HAS_STAND_IN = re.compile("[\ue000-\uf8ff]")


@dataclass(frozen=True, slots=True)
class _Detector:
    kind: str
    pattern: re.Pattern[str]
    # Returns the replacement for one match, or None to leave it (checksum failed).
    replace: Callable[[re.Match[str]], str | None]
    # Cheap pre-checks: fewer digits than this, or none of these substrings, and the pattern cannot match.
    min_digits: int = 0
    needs: tuple[str, ...] = ()
    needs_lower: tuple[str, ...] = ()  # checked against the lower-cased text


def _plain(kind: str) -> Callable[[re.Match[str]], str | None]:
    return lambda m: f"[{kind}]"


def _auth_scheme(m: re.Match[str]) -> str:
    return f"{m.group(1)}{m.group(2)}[token]"


def _card(m: re.Match[str]) -> str | None:
    text = m.group(0)
    groups = re.split(r"[ .-]", text)
    digits = "".join(groups)
    if 13 <= len(digits) <= 19 and luhn_valid(digits):
        return "[card]"
    # A card next to other numbers ("4111 1111 1111 1111 2030"): try runs of whole groups.
    if len(groups) > 1:
        return _card_in_groups(text, groups)
    return None


def _card_in_groups(text: str, groups: list[str]) -> str | None:
    seps = re.findall(r"[ .-]", text)
    n = len(groups)
    for size in range(n, 0, -1):
        for start in range(0, n - size + 1):
            run = "".join(groups[start : start + size])
            if 13 <= len(run) <= 19 and luhn_valid(run):
                end = start + size
                head = "".join(g + s for g, s in zip(groups[:start], seps[:start], strict=False))
                tail = "".join(s + g for s, g in zip(seps[end - 1 :], groups[end:], strict=False))
                return f"{head}[card]{tail}"
    return None


def _iban(m: re.Match[str]) -> str | None:
    text = m.group(0)
    positions = [i for i, ch in enumerate(text) if ch.isalnum()]
    compact = "".join(text[i] for i in positions).upper()
    length = IBAN_LENGTHS.get(compact[:2])
    if length is None or len(compact) < length:
        return None
    # The pattern is greedy; a registered length tells where the IBAN really ends.
    if iban_valid(compact[:length]):
        end = positions[length - 1] + 1
        return "[iban]" + text[end:]
    return None


def _phone(m: re.Match[str]) -> str | None:
    text = m.group(0)
    digits = sum(ch.isdigit() for ch in text)
    if not 9 <= digits <= 15 or _IPV4.fullmatch(text):
        return None
    # Dates and versions such as 2024-01-15 or 1.2.3 have at most 8 digits; wider runs with
    # dots only are more often decimal numbers than phones.
    if "." in text and not any(c in text for c in " -(+"):
        return None
    return "[phone]"


_DETECTORS: tuple[_Detector, ...] = (
    _Detector("jwt", _JWT, _plain("jwt"), needs=("eyJ",)),
    _Detector("token", _AUTH_SCHEME, _auth_scheme, needs_lower=("bearer", "basic")),
    _Detector("token", _KNOWN_SECRET, _plain("token"), needs=("k_live_", "k_test_", "gh", "xox", "AKIA", "sk-")),
    _Detector("email", _EMAIL, _plain("email"), needs=("@",)),
    _Detector("iban", _IBAN, _iban, min_digits=2),
    _Detector("card", _CARD, _card, min_digits=13),
    _Detector("ssn", _SSN, _plain("ssn"), min_digits=9),
    _Detector("phone", _PHONE, _phone, min_digits=9),
)
# Tokens, JWTs and e-mail addresses are looked for in the text as it is (a UUID can be a bearer token);
# the digit-group kinds after, with the text's UUIDs set aside.
_WORDS = tuple(d for d in _DETECTORS if d.kind in ("jwt", "token", "email"))
_DIGIT_GROUPS = tuple(d for d in _DETECTORS if d not in _WORDS)

# A cheap pre-check: text without digits, '@' or a token-ish word holds nothing to mask.
QUICK_CHECK = _MAYBE = re.compile(r"[0-9@]|eyJ|(?i:bearer|basic)|_live_|_test_|gh[pousr]_|xox|AKIA|sk-")
_DROP_DIGITS = str.maketrans("", "", "0123456789")


class _Replacer:
    """``re.sub`` callback that remembers whether it replaced anything."""

    __slots__ = ("hit", "replace")

    def __init__(self, replace: Callable[[re.Match[str]], str | None]) -> None:
        self.replace = replace
        self.hit = False

    def __call__(self, m: re.Match[str]) -> str:
        out = self.replace(m)
        if out is None:
            return m.group(0)
        self.hit = True
        return out


def mask_text(text: str, found: set[str]) -> str:
    """Replace PII and credentials in ``text``; add the kinds found to ``found``."""
    if not text or _MAYBE.search(text) is None:
        return text
    text = _mask(text, found, _WORDS)
    if "-" in text and _UUID.search(text) is not None and _HAS_STAND_IN.search(text) is None:
        ids: list[str] = []

        def stand_in(m: re.Match[str]) -> str:
            ids.append(m.group(0))
            return chr(_STAND_IN + len(ids) - 1)

        text = _mask(_UUID.sub(stand_in, text, count=_STAND_INS), found, _DIGIT_GROUPS)
        return _HAS_STAND_IN.sub(lambda m: ids[ord(m.group(0)) - _STAND_IN], text)
    return _mask(text, found, _DIGIT_GROUPS)


def _mask(text: str, found: set[str], detectors: tuple[_Detector, ...]) -> str:
    digits = len(text) - len(text.translate(_DROP_DIGITS))
    for det in detectors:
        if digits < det.min_digits:
            continue
        if det.needs and not any(n in text for n in det.needs):
            continue
        if det.needs_lower and not any(n in text.lower() for n in det.needs_lower):
            continue
        replacer = _Replacer(det.replace)
        text = det.pattern.sub(replacer, text)
        if replacer.hit:
            found.add(det.kind)
            digits = len(text) - len(text.translate(_DROP_DIGITS))
    return text
