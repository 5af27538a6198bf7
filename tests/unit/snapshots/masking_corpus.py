"""A generated corpus of secrets for the masking tests: each kind x each spelling x each position.

``SECRET_CASES`` are exchanges that each carry one secret somewhere; ``forbidden``
lists every spelling of it that must not survive in what is stored or published
(the spelling as sent and the decoded value). ``INNOCUOUS_CASES`` carry text that
looks a little like a secret and must be stored exactly as sent.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote

from link.events import Exchange, HttpMessage

JSON = {"content-type": "application/json"}
FORM = {"content-type": "application/x-www-form-urlencoded"}
TEXT = {"content-type": "text/plain"}
XML = {"content-type": "application/xml"}


@dataclass(frozen=True)
class Case:
    name: str
    exchange: Exchange
    forbidden: tuple[str, ...]
    expected: dict[str, object] = field(default_factory=dict)  # innocuous cases: field -> stored value


# -- spellings ----------------------------------------------------------------------------------
def pct(value: str) -> str:
    return "".join(f"%{b:02X}" for b in value.encode())


def pct2(value: str) -> str:
    return pct(value).replace("%", "%25")


def entities(value: str) -> str:
    return "".join(f"&#{ord(c)};" for c in value)


def fullwidth(value: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in value)


def zero_width(value: str) -> str:
    return "\u200b".join(value)


def soft_hyphens(value: str) -> str:
    return "\u00ad".join(value)


Spelling = Callable[[str], str]
SPELLINGS: dict[str, Spelling] = {
    "plain": lambda v: v,
    "percent": pct,
    "double-percent": pct2,
    "html-entities": entities,
    "full-width": fullwidth,
    "zero-width": zero_width,
    "soft-hyphen": soft_hyphens,
}

# -- secrets a detector recognises without a key name ------------------------------------------
CARD = "4111111111111111"
DETECTED: dict[str, tuple[str, tuple[str, ...]]] = {
    # name: (value, spellings that apply)
    "email": ("jane.doe@example.org", tuple(SPELLINGS)),
    "email-plus": ("ops+alerts@corp.example.com", ("plain", "percent", "full-width")),
    "card": (CARD, tuple(SPELLINGS)),
    "card-spaces": ("4111 1111 1111 1111", ("plain", "percent", "full-width", "html-entities")),
    "card-dashes": ("5500-0000-0000-0004", ("plain", "full-width")),
    "card-dots": ("4111.1111.1111.1111", ("plain", "full-width", "percent")),
    "amex": ("378282246310005", ("plain", "full-width", "zero-width")),
    "iban": ("DE89370400440532013000", ("plain", "full-width", "percent")),
    "iban-spaced": ("GB29 NWBK 6016 1331 9268 19", ("plain",)),
    "ssn": ("078-05-1120", ("plain", "full-width")),
    "jwt": ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJqYW5lIn0.c2lnbmF0dXJlLXZhbHVl", ("plain", "percent")),
    "stripe-key": ("sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", ("plain", "percent", "full-width")),
    "github-token": ("ghp_" + "A" * 12 + "b" * 12 + "9" * 12, ("plain", "percent")),
    "aws-key": ("AKIAIOSFODNN7EXAMPLE", ("plain", "full-width")),
    "phone": ("+1 415 555 2671", ("plain", "full-width")),
}

# -- secrets recognised by the key they are under ----------------------------------------------
KEYS = (
    "password", "passwd", "pwd", "passphrase", "pin", "PIN", "cvv", "CVV2", "otp", "client_secret",
    "private_key", "api_key", "newPassword", "user_password", "x-api-key", "accessToken", "session_id",
    "ssn", "iban", "Card-Number", "mfaCode", "X_Auth_Token", "refresh-token", "securityCode",
)
KEYED_VALUE = "Zq8hunterX77"  # nothing but its key says it is secret
KEYED_SPELLINGS = ("plain", "percent", "double-percent", "html-entities", "full-width", "zero-width")


def _decoded(value: str) -> tuple[str, ...]:
    """The forms a reader would recognise: the value, and for numbers the digits alone."""
    forms = {value, unicodedata.normalize("NFKC", value)}
    digits = "".join(c for c in value if c.isdigit())
    if len(digits) >= 9 and sum(c.isalpha() for c in value) <= 4:
        forms.add(digits)
    return tuple(sorted(forms))


def _exchange(name: str, *, path: str = "/orders", headers: dict[str, str] | None = None,
              body: bytes = b"", truncated: bool = False) -> Exchange:
    return Exchange(
        request_id=name, timestamp=1_700_000_000.0, method="POST", path=path, status=502,
        request=HttpMessage(headers={":path": path, **(headers or {})}, body=body, body_truncated=truncated),
        response=HttpMessage(headers=dict(JSON), body=b'{"error":"upstream down"}'),
        tenant="acme", route="orders",
    )


def _url(spelled: str, spelling: str) -> str:
    # What a URL can carry: percent spellings as they are, anything else percent-encoded once.
    return spelled if "percent" in spelling else quote(spelled, safe="")


def _detected_positions(name: str, v: str, spelling: str) -> dict[str, Exchange]:
    u = _url(v, spelling)
    return {
        "json-value": _exchange(name, headers=JSON, body=json.dumps({"note": v}).encode()),
        "json-nested": _exchange(name, headers=JSON, body=json.dumps({"a": {"b": [{"c": v}]}}).encode()),
        "json-array": _exchange(name, headers=JSON, body=json.dumps({"items": ["x", v]}).encode()),
        "json-raw-utf8": _exchange(name, headers=JSON,
                                   body=json.dumps({"note": v}, ensure_ascii=False).encode()),
        "query": _exchange(name, path=f"/orders?q={u}&page=2"),
        "form": _exchange(name, headers=FORM, body=f"q={u}&page=2".encode()),
        "header": _exchange(name, headers={"x-note": v}),
        "referer": _exchange(name, headers={"referer": f"https://app.example/search?u={u}"}),
        "text": _exchange(name, headers=TEXT, body=f"please contact {v} today".encode()),
        "url-path": _exchange(name, path=f"/users/{u}/profile"),
    }


def _keyed_positions(name: str, key: str, v: str, spelling: str) -> dict[str, Exchange]:
    u = _url(v, spelling)
    return {
        "json-value": _exchange(name, headers=JSON, body=json.dumps({key: v, "user": "jd"}).encode()),
        "json-nested": _exchange(name, headers=JSON, body=json.dumps({"data": {"profile": {key: v}}}).encode()),
        "json-array": _exchange(name, headers=JSON, body=json.dumps({"items": [{key: v}]}).encode()),
        "json-cut": _exchange(name, headers=JSON, body=f'{{"user":"jd","{key}":"{v}'.encode(), truncated=True),
        "query": _exchange(name, path=f"/login?{key}={u}&next=home"),
        "form": _exchange(name, headers=FORM, body=f"{key}={u}&next=home".encode()),
        "header": _exchange(name, headers={key.lower(): v}),
        "xml": _exchange(name, headers=XML, body=f"<req><{key}>{v}</{key}></req>".encode()),
        "text-is": _exchange(name, headers=TEXT, body=f"note: the {key} is {v} ok".encode()),
        "text-colon": _exchange(name, headers=TEXT, body=f"{key}: {v}\nnext line".encode()),
        "text-equals": _exchange(name, headers=TEXT, body=f"debug {key}={v} done".encode()),
    }


def _secret_cases() -> list[Case]:
    cases: list[Case] = []
    for kind, (value, spellings) in DETECTED.items():
        for spelling in spellings:
            spelled = SPELLINGS[spelling](value)
            for position, ex in _detected_positions(f"pii:{kind}|{spelling}|", spelled, spelling).items():
                ex.request_id += position
                cases.append(Case(ex.request_id, ex, (spelled, *_decoded(value))))
    for key in KEYS:
        for spelling in KEYED_SPELLINGS:
            spelled = SPELLINGS[spelling](KEYED_VALUE)
            for position, ex in _keyed_positions(f"key:{key}|{spelling}|", key, spelled, spelling).items():
                ex.request_id += position
                cases.append(Case(ex.request_id, ex, (spelled, KEYED_VALUE)))
    return cases


# -- text that must stay as it is ----------------------------------------------------------------
INNOCUOUS_VALUES = (
    "ORD-2024-000123", "2024-01-15T10:30:00Z", "v1.2.3", "10.0.0.1", "1234.56", "EUR 99.90",
    "550e8400-e29b-41d4-a716-446655440000", "The token is expired", "password reset required",
    "Please pin this message", "spin the wheel", "the passenger count is 4", "SKU-4111",
    "HTTP 502 Bad Gateway", "shipping address changed", "tokens used: 1532", "session expired, log in again",
    "report Q1 final", "build 20240115", "page 3 of 12", "secretary of state", "x-request-id",
)
INNOCUOUS_KEYS = ("pinned", "spinner", "secretary", "tokenizer", "passenger", "company", "authorName",
                  "opinion", "shipping", "tokens_used", "passive", "compass", "happiness")


def _innocuous_cases() -> list[Case]:
    cases: list[Case] = []
    for i, v in enumerate(INNOCUOUS_VALUES):
        base = f"ok|{i}|"
        doc = {"note": v, "items": [v]}
        cases += [
            Case(base + "json", _exchange(base + "json", headers=JSON, body=json.dumps(doc).encode()), (),
                 {"request.body": doc}),
            Case(base + "text", _exchange(base + "text", headers=TEXT, body=v.encode()), (),
                 {"request.body": v}),
            Case(base + "header", _exchange(base + "header", headers={"x-note": v}), (),
                 {"request.headers.x-note": v}),
            Case(base + "query", _exchange(base + "query", path=f"/search?q={quote(v)}"), (),
                 {"query.q": v}),
        ]
    for key in INNOCUOUS_KEYS:
        base = f"ok-key|{key}|"
        doc = {key: "value-42"}
        cases += [
            Case(base + "json", _exchange(base + "json", headers=JSON, body=json.dumps(doc).encode()), (),
                 {"request.body": doc}),
            Case(base + "form", _exchange(base + "form", headers=FORM, body=f"{key}=value-42".encode()), (),
                 {"request.body": f"{key}=value-42"}),
            Case(base + "header", _exchange(base + "header", headers={key.lower(): "value-42"}), (),
                 {f"request.headers.{key.lower()}": "value-42"}),
        ]
    return cases


SECRET_CASES = _secret_cases()
INNOCUOUS_CASES = _innocuous_cases()


def stored_value(doc: dict[str, object], dotted: str) -> object:
    """``request.headers.x-note`` -> doc["request"]["headers"]["x-note"]; JSON bodies are parsed."""
    head, _, rest = dotted.partition(".")
    if head == "request" and rest.startswith("headers."):
        return doc["request"]["headers"][rest.removeprefix("headers.")]  # type: ignore[index]
    if head == "query":  # the stored path's query, decoded (the masker may re-encode it)
        return dict(parse_qsl(str(doc["request_path"]).partition("?")[2])).get(rest)
    if dotted == "request.body":
        body = doc["request"]["body"]  # type: ignore[index]
        ctype = doc["request"]["headers"].get("content-type", "")  # type: ignore[index]
        return json.loads(body) if "json" in ctype else body  # type: ignore[arg-type]
    return doc[dotted]


def leaks(text: str, case: Case) -> list[str]:
    """Spellings of the case's secret still present in ``text`` (a stored or published document)."""
    return [f for f in case.forbidden if f and f in text]
