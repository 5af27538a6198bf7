"""PiiMasker on structured parts: JSON bodies, headers, URLs, forms, XML, compressed and binary bodies."""

from __future__ import annotations

import gzip
import json

from link.settings import SnapshotSettings
from link.snapshots.masking import MASKED, REDACTED, PiiMasker

M = PiiMasker(SnapshotSettings().mask_keys)


def test_json_keys_masked_recursively_and_pii_in_strings() -> None:
    body = {
        "user": {"email": "a@b.io", "Password": "hunter2", "apiKey": "xyz", "client-secret": {"v": 1}},
        "items": [{"refresh_token": "r"}, {"note": "call +1 415 555 2671"}],
        "card": 4111111111111111,
        "count": 5,
        "empty_token": "",
    }
    found: set[str] = set()
    raw = json.dumps(body).encode()
    out = json.loads(M.mask_body(raw, {"content-type": "application/json"}, False, found))
    assert out["user"] == {"email": "[email]", "Password": MASKED, "apiKey": MASKED, "client-secret": MASKED}
    assert out["items"] == [{"refresh_token": MASKED}, {"note": "call [phone]"}]
    assert out["card"] == "[card]"
    assert out["count"] == 5
    assert out["empty_token"] == ""  # nothing to hide
    assert found == {"email", "secret", "phone", "card"}


def test_masked_key_matching_is_by_word() -> None:
    assert M.is_masked_key("x_client_secret")
    assert M.is_masked_key("userPassword")
    assert M.is_masked_key("API-Key")
    assert not M.is_masked_key("secretary")
    assert not M.is_masked_key("tokenizer")


def test_truncated_json_masked_by_pattern() -> None:
    found: set[str] = set()
    out = M.mask_body(b'{"user": "x", "password": "hunt', {"content-type": "application/json"}, True, found)
    assert "hunt" not in out
    assert out.startswith('{"user": "x", "password": "[masked]')


def test_secret_headers_redacted_and_other_headers_masked() -> None:
    found: set[str] = set()
    out = M.mask_headers(
        {"Authorization": "Bearer x", "Cookie": "sid=1", "X-Client-Secret": "s", "x-user": "a@b.io",
         "accept": "*/*", ":path": "/u/a%40b.io?token=abc&page=2"},
        found,
    )
    assert out["authorization"] == REDACTED
    assert out["cookie"] == REDACTED
    assert out["x-client-secret"] == REDACTED
    assert out["x-user"] == "[email]"
    assert out["accept"] == "*/*"
    assert out[":path"] == f"/u/[email]?token={MASKED}&page=2"
    assert found == {"email", "secret"}
    found.clear()
    assert M.mask_headers({"authorization": "Bearer x", "accept": "*/*"}, found)["authorization"] == REDACTED
    assert found == set()  # routine redaction is not a finding


def test_url_keeps_its_shape() -> None:
    found: set[str] = set()
    assert M.mask_url("/users/a%40b.io/cards/4111111111111111?access_token=abc&page=2", found) == (
        f"/users/[email]/cards/[card]?access_token={MASKED}&page=2"
    )


def test_form_and_xml_bodies() -> None:
    found: set[str] = set()
    form = M.mask_body(b"user=a%40b.io&password=x&q=1", {"content-type": "application/x-www-form-urlencoded"},
                       False, found)
    assert form == f"user=[email]&password={MASKED}&q=1"
    xml = M.mask_body(b"<x><Password>p</Password><n>4111111111111111</n></x>", {"content-type": "text/xml"},
                      False, found)
    assert xml == f"<x><Password>{MASKED}</Password><n>[card]</n></x>"


def test_compressed_binary_and_cut_bodies() -> None:
    found: set[str] = set()
    gz = gzip.compress(json.dumps({"e": "a@b.io", "n": 1}).encode())
    out = M.mask_body(gz, {"content-encoding": "gzip", "content-type": "application/json"}, False, found)
    assert json.loads(out) == {"e": "[email]", "n": 1}
    assert M.mask_body(bytes(range(256)), {}, False, found) == "[binary body, 256 bytes]"
    assert M.mask_body(b"x" * 10, {"content-encoding": "br"}, False, found) == "[br body, 10 bytes]"
    # The cut left half an address and half a card number.
    assert M.mask_body(b'{"to": "john.doe@exa', {}, True, found) == '{"to": "[truncated]'
    cut_card = M.mask_body(b'{"pan": "4111 1111 1111 11', {}, True, found)
    assert cut_card.startswith('{"pan": "[')
    assert "1111" not in cut_card


def test_secret_header_names_are_masked_keys_in_bodies_too() -> None:
    found: set[str] = set()
    echoed = {"headers": {"Cookie": "sid=abc", "set-cookie": "x=1", "X-Auth-Token": "t", "accept": "*/*"}}
    out = json.loads(M.mask_body(json.dumps(echoed).encode(), {}, False, found))
    assert out == {"headers": {"Cookie": MASKED, "set-cookie": MASKED, "X-Auth-Token": MASKED, "accept": "*/*"}}
    assert M.mask_text('{"cookie": "sid=abc", "a": 1', found) == '{"cookie": "[masked]", "a": 1'
