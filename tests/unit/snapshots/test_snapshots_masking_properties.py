"""Property tests: generated PII and secrets never reach the snapshot store's bytes on disk."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from link.events import Exchange, HttpMessage
from link.model import Outcome
from link.settings import SnapshotSettings
from link.snapshots import REDACTED, SECRET_HEADERS, PiiMasker, SnapshotOrigin, SnapshotStore, build_snapshot
from link.snapshots.detectors import iban_valid, luhn_valid
from tests.unit.snapshots.snapshot_strategies import card_numbers, ibans, jwts, opaque_tokens, secret_values

MASKER = PiiMasker(SnapshotSettings().mask_keys)
ORIGIN = SnapshotOrigin(gateway_id="gw", instance="pod-1", mode="sidecar")
SECRET_HEADER_NAMES = sorted(SECRET_HEADERS)
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _stored_bytes(exchange: Exchange) -> bytes:
    """Build the snapshot, store it in a fresh SQLite file, and return every byte on disk."""
    with tempfile.TemporaryDirectory() as d:
        store = SnapshotStore(Path(d) / "s.db", retention_s=86_400, max_bytes=1 << 24)
        store.open()
        stored, _ = store.put_many([build_snapshot(exchange, MASKER, ORIGIN)])
        assert stored == 1
        store.close()
        return b"".join(p.read_bytes() for p in Path(d).iterdir() if p.is_file())


def _exchange(request_body: bytes, response_body: bytes, *, path: str = "/orders/1",
              req_headers: dict[str, str] | None = None, resp_headers: dict[str, str] | None = None,
              ctype: str = "application/json") -> Exchange:
    return Exchange(
        request_id="req-1",
        timestamp=1_700_000_000.0,
        method="POST",
        path=path,
        status=502,
        request=HttpMessage(headers={"content-type": ctype, **(req_headers or {})}, body=request_body),
        response=HttpMessage(headers={"content-type": ctype, **(resp_headers or {})}, body=response_body),
        tenant="acme",
        route="orders",
        outcome=Outcome.SUCCESS,
    )


def _assert_absent(blob: bytes, *secrets: str) -> None:
    for secret in secrets:
        assert secret.encode() not in blob, f"{secret!r} reached the store"


@PROPS
@given(email=st.emails(), phone_free=st.booleans())
def test_generated_emails_never_stored(email: str, phone_free: bool) -> None:
    body = json.dumps({"customer": {"contact": email, "note": f"write to {email} please"}}).encode()
    text = f"user {email} not found".encode()
    ex = _exchange(body, text, path=f"/users/{quote(email, safe='')}/orders?email={quote(email, safe='')}",
                   req_headers={"x-user-email": email}, resp_headers={"content-type": "text/plain"})
    _assert_absent(_stored_bytes(ex), email)


@PROPS
@given(card=card_numbers())
def test_valid_card_numbers_never_stored(card: str) -> None:
    digits = card.replace(" ", "").replace("-", "")
    assert luhn_valid(digits)
    body = json.dumps({"payment": {"pan": card, "pan_number": int(digits), "memo": f"card {card}."}}).encode()
    ex = _exchange(body, f"declined: {card}".encode(), req_headers={"x-card": card},
                   resp_headers={"content-type": "text/plain"})
    _assert_absent(_stored_bytes(ex), card, digits)


@PROPS
@given(iban=ibans())
def test_valid_ibans_never_stored(iban: str) -> None:
    compact = iban.replace(" ", "")
    assert iban_valid(compact)
    body = json.dumps({"transfer": {"to": iban, "text": f"IBAN {iban}, thanks"}}).encode()
    ex = _exchange(body, f"<error><account>{iban}</account></error>".encode(),
                   resp_headers={"content-type": "application/xml"})
    _assert_absent(_stored_bytes(ex), iban, compact)


@PROPS
@given(jwt=jwts(), token=opaque_tokens)
def test_tokens_never_stored(jwt: str, token: str) -> None:
    body = json.dumps({"access_token": token, "refresh_token": jwt, "nested": [{"id_token": jwt}],
                       "log": f"sent Bearer {token} and {jwt}"}).encode()
    form = f"grant_type=password&client_secret={token}&password={token}".encode()
    ex = _exchange(
        body, form, path=f"/cb?api_key={token}&code=1",
        req_headers={"x-debug": f"Bearer {token}", "x-forwarded-token": jwt},
        resp_headers={"content-type": "application/x-www-form-urlencoded"},
    )
    _assert_absent(_stored_bytes(ex), jwt, token)


@PROPS
@given(values=st.lists(secret_values, min_size=len(SECRET_HEADER_NAMES), max_size=len(SECRET_HEADER_NAMES),
                       unique=True))
def test_secret_header_values_never_stored(values: list[str]) -> None:
    headers = dict(zip(SECRET_HEADER_NAMES, values, strict=True))
    # Also spelled as Envoy never would, to be sure names are matched case-insensitively.
    upper = {k.upper(): v for k, v in headers.items()}
    ex = _exchange(b"{}", b"{}", req_headers=headers, resp_headers=upper)
    _assert_absent(_stored_bytes(ex), *values)
    doc = build_snapshot(ex, MASKER, ORIGIN)
    for side in ("request", "response"):
        for name in SECRET_HEADER_NAMES:
            assert doc[side]["headers"][name] == REDACTED
    for value in values:
        assert value not in doc["replay_command"]


@PROPS
@given(email=st.emails(), card=card_numbers(), cut=st.integers(1, 200))
def test_cut_excerpts_leak_nothing(email: str, card: str, cut: int) -> None:
    """A body excerpt may end anywhere, even inside an address or a card number."""
    full = json.dumps({"a": "x" * (cut % 37), "email": email, "card": card, "pwd": "y"}).encode()
    excerpt = full[: max(1, len(full) - cut)]
    ex = _exchange(excerpt, b"")
    ex.request.body_truncated = True
    blob = _stored_bytes(ex)
    _assert_absent(blob, email, card)
    # Whatever part of them the cut left must not be recognisable either.
    local = email.split("@")[0]
    if len(local) >= 8 and (local + "@").encode() in excerpt:
        assert (local + "@").encode() not in blob
