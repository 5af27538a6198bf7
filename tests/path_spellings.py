"""Spellings of request paths an attacker uses to reach one route while a proxy sees another.

Written from RFC 3986 §5.2.4 (dot segments), §2.1/§2.3 (percent-encoding, unreserved characters)
and the path-confusion class of gateway/proxy CVEs: encoded dots (CVE-2021-41773/42013, Apache),
``..;`` and ``;`` path parameters (CVE-2020-1957 Shiro, Tomcat's servlet path rules), encoded
slashes and backslashes (CVE-2019-0230, Envoy's own CVE-2019-9901), overlong UTF-8 (CVE-2000-0884,
IIS), double decoding (CVE-2001-0333, IIS), doubled slashes, absolute-form request targets.

Each row: the raw request target, the normalized path the gateway must receive (``None``: the
request must be refused with 400), and who refuses it ("envoy" at the listener, "link" in the
pipeline; "" when nobody does). The protected target of most rows is ``/api/invoices/inv-1001``.
"""

from __future__ import annotations

from typing import NamedTuple

PROTECTED = "/api/invoices/inv-1001"


class Spelling(NamedTuple):
    raw: str
    normalized: str | None
    refused_by: str = ""


SPELLINGS: tuple[Spelling, ...] = (
    # RFC 3986 dot segments, plain and percent-encoded (any case, mixed).
    Spelling("/public/../api/invoices/inv-1001", PROTECTED),
    Spelling("/public/%2e%2e/api/invoices/inv-1001", PROTECTED),
    Spelling("/public/%2E%2E/api/invoices/inv-1001", PROTECTED),
    Spelling("/public/%2E%2e/api/invoices/inv-1001", PROTECTED),
    Spelling("/public/.%2e/api/invoices/inv-1001", PROTECTED),
    Spelling("/public/%2e./api/invoices/inv-1001", PROTECTED),
    Spelling("/public/./../api/invoices/inv-1001", PROTECTED),
    Spelling("/public/x/../../api/invoices/inv-1001", PROTECTED),
    Spelling("/../api/invoices/inv-1001", PROTECTED),
    Spelling("/%2e%2e/%2e%2e/api/invoices/inv-1001", PROTECTED),
    Spelling("/./api/invoices/inv-1001", PROTECTED),
    Spelling("/api/./invoices/../invoices/inv-1001", PROTECTED),
    Spelling("/api/invoices/./inv-1001", PROTECTED),
    Spelling("/api/invoices/inv-1001/.", PROTECTED + "/"),
    Spelling("/public/.../../api/invoices/inv-1001", "/public/api/invoices/inv-1001"),
    # Doubled slashes: merged after dot segments (the empty segment is what ".." removes).
    Spelling("//api//invoices//inv-1001", PROTECTED),
    Spelling("///public/../api/invoices/inv-1001", PROTECTED),
    Spelling("/public//../api/invoices/inv-1001", "/public/api/invoices/inv-1001"),
    # Backslashes are separators to Envoy (and to Windows-backed gateways).
    Spelling("/public\\..\\api\\invoices\\inv-1001", PROTECTED),
    Spelling("/public/..\\api/invoices/inv-1001", PROTECTED),
    # Encoded slashes and backslashes: refused at the listener.
    Spelling("/public/..%2fapi/invoices/inv-1001", None, "envoy"),
    Spelling("/public/..%2Fapi/invoices/inv-1001", None, "envoy"),
    Spelling("/public/..%5capi/invoices/inv-1001", None, "envoy"),
    Spelling("/public/..%5Capi/invoices/inv-1001", None, "envoy"),
    Spelling("/api%2finvoices%2finv-1001", None, "envoy"),
    Spelling("/public/%2e%2e%2fapi/invoices/inv-1001", None, "envoy"),
    # ";" path parameters (Tomcat-style "..;"): Envoy resolves "..;" itself; whatever ";" it keeps, Link refuses.
    Spelling("/public/..;/api/invoices/inv-1001", PROTECTED),
    Spelling("/public;/../api/invoices/inv-1001", PROTECTED),
    Spelling("/public/..;x=1/api/invoices/inv-1001", PROTECTED),
    Spelling("/public/%2e%2e;/api/invoices/inv-1001", None, "link"),
    Spelling("/public/x;/../../api/invoices/inv-1001", PROTECTED),
    Spelling("/public/hello;/api/invoices/inv-1001", None, "link"),
    Spelling("/api/invoices/inv-1001;.css", None, "link"),
    # Double encoding: a second decoder would see "%2e%2e" / "%2f".
    Spelling("/public/%252e%252e/api/invoices/inv-1001", None, "link"),
    Spelling("/public/%25%32%65%25%32%65/api/invoices/inv-1001", None, "link"),
    Spelling("/public/..%252fapi/invoices/inv-1001", None, "link"),
    Spelling("/public/%255c../api/invoices/inv-1001", None, "link"),
    # Overlong and invalid UTF-8 (IIS "Unicode" class): "%c0%ae" is an overlong ".", "%c0%af" a "/".
    Spelling("/public/%c0%ae%c0%ae/api/invoices/inv-1001", None, "link"),
    Spelling("/public/%e0%80%ae%e0%80%ae/api/invoices/inv-1001", None, "link"),
    Spelling("/public/..%c0%afapi/invoices/inv-1001", None, "link"),
    Spelling("/public/%ff", None, "link"),
    Spelling("/public/caf%e9", None, "link"),  # Latin-1, not UTF-8
    # Invalid percent-encoding: no reading is the right one.
    Spelling("/public/%zz", None, "link"),
    Spelling("/public/%2/x", None, "link"),
    Spelling("/api/invoices/inv-%zz1001", None, "link"),
    Spelling("/public/%u002e%u002e/api/invoices/inv-1001", None, "link"),
    Spelling("/public/hello%", None, "link"),
    # NUL and other control characters, raw or encoded.
    Spelling("/public/..%00/api/invoices/inv-1001", None, "envoy"),
    Spelling("/api/invoices/inv-1001%00", None, "envoy"),
    Spelling("/public/%0d%0ax-stoa-tenant:%20evil", None, "link"),
    Spelling("/public/%7f", None, "link"),
    Spelling("/public/%09", None, "link"),
    Spelling("/public/\t/../api/invoices/inv-1001", None, "envoy"),
    Spelling("/public/..#/api/invoices/inv-1001", None, "envoy"),
    # A segment a later ".." removes is gone before anyone decodes it: Envoy forwards a clean path
    # (Link alone, reading the raw spelling, refuses it; both are safe).
    Spelling("/public/%zz/../../api/invoices/inv-1001", PROTECTED),
    Spelling("/public/%ff/../../api/invoices/inv-1001", PROTECTED),
    Spelling("/public/%0a/../../api/invoices/inv-1001", PROTECTED),
    # Percent-encoded unreserved characters are the characters themselves.
    Spelling("/%61pi/invoices/inv-1001", PROTECTED),
    Spelling("/api/invoices/%69nv-1001", PROTECTED),
    Spelling("/public/%7Euser", "/public/~user"),
    # Not dot segments, and left alone.
    Spelling("/public/...", "/public/..."),
    Spelling("/public/x.", "/public/x."),
    Spelling("/public/..x/../../api/invoices/inv-1001", PROTECTED),
    Spelling("/public/x/..", "/public/"),
    Spelling("/public/%2e", "/public/"),
    Spelling("/public/hello%3F.json", "/public/hello%3F.json"),
    Spelling("/public/%E2%80%AEgpj.exe", "/public/%E2%80%AEgpj.exe"),
    Spelling("/API/invoices/inv-1001", "/API/invoices/inv-1001"),  # case is meaningful; unrouted = refused
    # The query string is not part of the path: never normalized, never matched.
    Spelling("/api/invoices/inv-1001?next=/../../public/x", PROTECTED),
    Spelling("/public/x?next=/../../api/invoices/inv-1001", "/public/x"),
    # Absolute-form request targets (RFC 9112 §3.2.2).
    Spelling("http://127.0.0.1/public/../api/invoices/inv-1001", PROTECTED),
    Spelling("HTTP://example.com/public/%2e%2e/api/invoices/inv-1001", PROTECTED),
    Spelling("http://example.com//api//invoices/inv-1001", PROTECTED),
    # Not a path at all (asterisk-form is for OPTIONS only, and never routable).
    Spelling("*", None, "envoy"),
    # The clean spellings, for reference.
    Spelling(PROTECTED, PROTECTED),
    Spelling("/public/hello", "/public/hello"),
)
