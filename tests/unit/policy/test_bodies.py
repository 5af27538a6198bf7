"""parsed_path, parsed_query and parsed_body as OPA-Envoy (Go's url, encoding/json, mime/multipart) builds them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from link.model import Request
from link.policy.bodies import MAX_BODY_DEPTH, InputError, load_json, parse_body, parse_path, parse_query


@pytest.mark.parametrize(("path", "parsed"), [
    ("/", [""]),
    ("/people", ["people"]),
    ("/people/", ["people", ""]),
    ("//people", ["people"]),  # leading slashes trimmed, like strings.TrimLeft
    ("/people/Charlie%20Opa", ["people", "Charlie Opa"]),
    ("/a/b%2Fc", ["a", "b", "c"]),  # decoded first, then split
    ("/a+b", ["a+b"]),  # + is not a space in a path
    ("/caf%C3%A9", ["café"]),
    ("/bad%FF", ["bad\ufffd"]),
])
def test_parsed_path(path: str, parsed: list[str]) -> None:
    assert parse_path(path) == parsed


@pytest.mark.parametrize("path", ["/a%", "/a%2", "/a%zz", "/%G0"])
def test_parsed_path_bad_escape_is_an_input_error(path: str) -> None:
    with pytest.raises(InputError, match="invalid URL escape"):
        parse_path(path)


@pytest.mark.parametrize(("query", "parsed"), [
    ("", {}),
    ("lang=en", {"lang": ["en"]}),
    ("a=1&a=2&b=", {"a": ["1", "2"], "b": [""]}),
    ("flag", {"flag": [""]}),
    ("a=1&&b=2", {"a": ["1"], "b": ["2"]}),
    ("=x", {"": ["x"]}),
    ("q=a+b&r=a%20b&s=%2B", {"q": ["a b"], "r": ["a b"], "s": ["+"]}),
    ("k%3D=v%26", {"k=": ["v&"]}),
    ("a=b=c", {"a": ["b=c"]}),
])
def test_parsed_query(query: str, parsed: dict[str, list[str]]) -> None:
    assert parse_query(query) == parsed


@pytest.mark.parametrize(("query", "reason"), [
    ("a=1;b=2", "semicolon"),
    ("a;b", "semicolon"),
    ("a=%zz", "invalid URL escape"),
    ("%=1", "invalid URL escape"),
    ("ok=1&bad=%4", "invalid URL escape"),
])
def test_parsed_query_errors(query: str, reason: str) -> None:
    with pytest.raises(InputError, match=reason):
        parse_query(query)


def _request(body: bytes | None, content_type: str | None = "application/json", *, truncated: bool = False,
             length: str | None = "auto") -> Request:
    headers: dict[str, str] = {}
    if content_type is not None:
        headers["content-type"] = content_type
    if length == "auto" and body is not None:
        headers["content-length"] = str(len(body))
    elif length not in (None, "auto"):
        headers["content-length"] = length
    return Request(method="POST", path="/", headers=headers, body=body, body_truncated=truncated)


@pytest.mark.parametrize(("body", "parsed"), [
    (b'{"firstname": "Charlie"}', {"firstname": "Charlie"}),
    (b"  [1, 2.5, true, null]\n", [1, 2.5, True, None]),
    (b'"text"', "text"),
    (b"null", None),
    (b'{"a": 1, "a": 2}', {"a": 2}),  # duplicate keys: the last one, like Go
    (b'{"s": "\\ud83d\\ude00"}', {"s": "\U0001f600"}),
    (b'{"n": 123456789012345678901234567890}', {"n": 123456789012345678901234567890}),
    ('{"é": "ü"}'.encode(), {"é": "ü"}),
])
def test_json_body(body: bytes, parsed: Any) -> None:
    assert parse_body(_request(body)) == (parsed, False)


@pytest.mark.parametrize(("body", "reason"), [
    (b'{"a": tru', "not valid JSON"),
    (b"{} {}", "not valid JSON"),
    (b'{"a": NaN}', "not valid JSON"),
    (b"[Infinity]", "not valid JSON"),
    (b"{'a': 1}", "not valid JSON"),
    (b"\xef\xbb\xbf{}", "not valid JSON"),  # a BOM is not JSON (Go refuses it too)
    # Stricter than Go, which replaces these by U+FFFD (link.jsonsafe refuses them everywhere).
    (b'{"s": "\\ud800x"}', "not valid JSON"),
    (b'{"bad": "\xff"}', "not valid JSON"),
    (b'{"n": 1e999999}', "not valid JSON"),
    (b"[" * (MAX_BODY_DEPTH + 1) + b"]" * (MAX_BODY_DEPTH + 1), "nested too deeply"),
    (b"[" * 100_000, "nested too deeply"),  # Python's own recursion limit: still a 400, never a crash
    (b'{"a":' * (MAX_BODY_DEPTH + 1) + b"1" + b"}" * (MAX_BODY_DEPTH + 1), "nested too deeply"),
])
def test_malformed_json_body_is_an_input_error(body: bytes, reason: str) -> None:
    with pytest.raises(InputError, match=reason):
        parse_body(_request(body))


def test_depth_limit_is_inclusive_and_wide_documents_pass() -> None:
    deep = json.loads(b"[" * MAX_BODY_DEPTH + b"]" * MAX_BODY_DEPTH)
    assert load_json(b"[" * MAX_BODY_DEPTH + b"]" * MAX_BODY_DEPTH) == deep
    wide = [{"a": [i]} for i in range(5000)]  # many containers, shallow
    assert load_json(json.dumps(wide).encode()) == wide


@pytest.mark.parametrize(("request_", "expected"), [
    # Envoy marks a body it cut: never parsed, whatever the type.
    (_request(b'{"a": 1}', truncated=True), (None, True)),
    (_request(b"x", "application/octet-stream", truncated=True), (None, True)),
    # Shorter than declared: truncated (JSON, form, multipart).
    (_request(b'{"a"', length="100"), (None, True)),
    (_request(b"a=1", "application/x-www-form-urlencoded", length="100"), (None, True)),
    (_request(b"--b\r\n", "multipart/form-data; boundary=b", length="100"), (None, True)),
    (_request(b"{}", length="-1"), ({}, False)),
    # Nothing to parse.
    (_request(None), (None, False)),
    (_request(b""), (None, False)),
    (_request(b'{"a": 1}', None), (None, False)),
    (_request(b"<a/>", "application/xml"), (None, False)),
    (_request(b'{"a": 1}', "Application/JSON"), (None, False)),  # Go's test is case-sensitive
    (_request(b'{"a": 1}', "text/plain"), (None, False)),
    # Media types recognised as substrings, like OPA-Envoy.
    (_request(b'{"a": 1}', "application/json; charset=utf-8"), ({"a": 1}, False)),
    (_request(b'{"a": 1}', length=None), ({"a": 1}, False)),
    (_request(b"a=1&a=2&b=x+y", "application/x-www-form-urlencoded"), ({"a": ["1", "2"], "b": ["x y"]}, False)),
    (_request(b"a=1", "application/x-www-form-urlencoded; charset=utf-8"), ({"a": ["1"]}, False)),
    (_request(b"x", "multipart/form-data"), (None, False)),  # no boundary: not parsed
])
def test_body_cases(request_: Request, expected: tuple[Any, bool]) -> None:
    assert parse_body(request_) == expected


@pytest.mark.parametrize(("request_", "reason"), [
    (_request(b"{}", length="ten"), "Content-Length"),
    (_request(b"a=%zz", "application/x-www-form-urlencoded"), "invalid URL escape"),
    (_request(b"a=1;b=2", "application/x-www-form-urlencoded"), "semicolon"),
    (_request(b"--b\r\n\r\nx\r\n--b--", "multipart/form-data; boundary"), "media parameter"),
])
def test_body_input_errors(request_: Request, reason: str) -> None:
    with pytest.raises(InputError, match=reason):
        parse_body(request_)


def _multipart(*parts: str, boundary: str = "B0undary", eol: str = "\r\n", preamble: str = "",
               close: bool = True) -> bytes:
    text = preamble
    for part in parts:
        text += f"--{boundary}{eol}{part}{eol}"
    if close:
        text += f"--{boundary}--{eol}"
    return text.encode()


def _part(name: str | None, value: str, content_type: str | None = None, eol: str = "\r\n",
          filename: str | None = None) -> str:
    headers = []
    if name is not None:
        disposition = f'form-data; name="{name}"'
        if filename:
            disposition += f'; filename="{filename}"'
        headers.append(f"Content-Disposition: {disposition}")
    if content_type:
        headers.append(f"Content-Type: {content_type}")
    return eol.join(headers) + eol + eol + value


MP = "multipart/form-data; boundary=B0undary"


@pytest.mark.parametrize(("body", "content_type", "parsed"), [
    (_multipart(_part("a", "1"), _part("a", "2"), _part("b", "x")), MP, {"a": ["1", "2"], "b": ["x"]}),
    (_multipart(_part("meta", '{"kind": "invoice"}', "application/json")), MP, {"meta": [{"kind": "invoice"}]}),
    (_multipart(_part("f", "line 1\r\nline 2", "text/plain", filename="a.txt")), MP, {"f": ["line 1\r\nline 2"]}),
    (_multipart(_part("empty", "")), MP, {"empty": [""]}),
    (_multipart(_part(None, "no name"), _part("k", "v")), MP, {"k": ["v"]}),  # parts without a name skipped
    (_multipart(_part("k", "v"), preamble="ignored preamble\r\n"), MP, {"k": ["v"]}),
    (_multipart(_part("k", "v", eol="\n"), eol="\n"), MP, {"k": ["v"]}),  # bare LF line ends
    (_multipart(_part("k", "v"), boundary="with space"), 'multipart/form-data; boundary="with space"',
     {"k": ["v"]}),
    (_multipart(), MP, {}),
])
def test_multipart_body(body: bytes, content_type: str, parsed: dict[str, list[Any]]) -> None:
    assert parse_body(_request(body, content_type)) == (parsed, False)


@pytest.mark.parametrize(("body", "reason"), [
    (_multipart(_part("k", "v"), close=False), "closing boundary"),
    (b"no boundary here at all", "no boundary"),
    (_multipart(_part("meta", "{bad", "application/json")), "not valid JSON"),
    (b"--B0undaryjunk\r\n\r\nv\r\n--B0undary--\r\n", "delimiter"),
    (b"--B0undary\r\nno colon header\r\n\r\nv\r\n--B0undary--\r\n", "part header"),
])
def test_malformed_multipart_is_an_input_error(body: bytes, reason: str) -> None:
    with pytest.raises(InputError, match=reason):
        parse_body(_request(body, MP))
