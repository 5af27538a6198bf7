"""JWT validation through the identity phase: every allowed algorithm, and a hostile corpus."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from link.model import CredentialKind, Outcome
from tests.harness.oidc import KeyPair
from tests.unit.identity.support import ISSUER_URL, IdpDouble, PhaseFactory, bearer, ctx_for


def b64(data: bytes | dict[str, Any] | list[Any]) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def raw_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"sig") -> str:
    return f"{b64(header)}.{b64(claims)}.{b64(signature)}"


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"])
async def test_every_allowed_algorithm_is_accepted(
    idp: IdpDouble, make_phase: PhaseFactory, alg: str
) -> None:
    key = idp.issuer.rotate(alg)
    ctx = ctx_for(bearer(idp.issuer.token(key=key, sub="alice", azp="billing-app", tenant="acme")))
    assert await make_phase()(ctx) is None
    p = ctx.principal
    assert (p.kind, p.subject, p.consumer, p.tenant, p.issuer) == (
        CredentialKind.JWT,
        "alice",
        "billing-app",
        "acme",
        ISSUER_URL,
    )


async def test_clock_skew_within_leeway_is_tolerated(idp: IdpDouble, make_phase: PhaseFactory) -> None:
    now = int(time.time())
    token = idp.issuer.token(exp=now - 10, nbf=now + 10, iat=now + 10)
    assert await make_phase(leeway_s=30)(ctx_for(bearer(token))) is None
    assert (await make_phase(leeway_s=0)(ctx_for(bearer(token)))) is not None


def _hs256_with_public_key(idp: IdpDouble) -> str:
    # The classic confusion attack: HMAC keyed with the RSA public key the JWKS publishes.
    header = {"alg": "HS256", "typ": "JWT", "kid": idp.issuer.active.kid}
    signing_input = f"{b64(header)}.{b64(idp.issuer.claims())}"
    sig = hmac.new(idp.issuer.active.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


def _tampered(idp: IdpDouble) -> str:
    head, _, sig = idp.issuer.token(sub="alice").split(".")
    return f"{head}.{b64(idp.issuer.claims(sub='admin'))}.{sig}"


def _wrong_key_type(idp: IdpDouble) -> str:
    ec_key = KeyPair.generate("ES256", kid=idp.issuer.active.kid)  # an RSA kid, an EC signature
    return ec_key.sign(idp.issuer.claims())


HOSTILE: dict[str, tuple[Any, str]] = {
    # name: (token builder, expected reason)
    "alg none": (
        lambda i: raw_token({"alg": "none", "kid": i.issuer.active.kid}, i.issuer.claims(), b""),
        "unsupported_algorithm",
    ),
    "alg None spelled differently": (
        lambda i: raw_token({"alg": "None"}, i.issuer.claims(), b""),
        "unsupported_algorithm",
    ),
    "HS256 signed with the RSA public key": (_hs256_with_public_key, "unsupported_algorithm"),
    "no alg": (lambda i: raw_token({"kid": i.issuer.active.kid}, i.issuer.claims()), "unsupported_algorithm"),
    "expired": (lambda i: i.issuer.token(exp=int(time.time()) - 3600), "token_expired"),
    "not yet valid": (lambda i: i.issuer.token(nbf=int(time.time()) + 3600), "token_not_yet_valid"),
    "issued in the future": (lambda i: i.issuer.token(iat=int(time.time()) + 3600), "token_issued_in_future"),
    "wrong issuer": (lambda i: i.issuer.token(iss="https://evil.example.test/realms/stoa"), "unknown_issuer"),
    "issuer with trailing slash": (lambda i: i.issuer.token(iss=ISSUER_URL + "/"), "unknown_issuer"),
    "wrong audience": (lambda i: i.issuer.token(aud="other-api", azp="other-app"), "wrong_audience"),
    "unknown kid": (lambda i: KeyPair.generate("RS256").sign(i.issuer.claims()), "unknown_key"),
    "tampered payload": (_tampered, "bad_signature"),
    "signature from another key with a known kid": (
        lambda i: KeyPair.generate("RS256", kid=i.issuer.active.kid).sign(i.issuer.claims()),
        "bad_signature",
    ),
    "EC signature with an RSA kid": (_wrong_key_type, "key_mismatch"),
    "malformed base64": (lambda i: "eyJhbGciOiJSUzI1NiJ9!.e30.c2ln", "malformed_token"),
    "base64 with padding": (
        lambda i: raw_token({"alg": "RS256"}, {}).replace(".", "==.", 1),
        "malformed_token",
    ),
    "two segments": (lambda i: "eyJhbGciOiJSUzI1NiJ9.e30", "malformed_token"),
    "JWE (five segments)": (lambda i: "a.b.c.d.e", "malformed_token"),
    "header not JSON": (
        lambda i: f"{b64(b'not json')}.{b64(i.issuer.claims())}.{b64(b'x')}",
        "malformed_token",
    ),
    "payload a JSON list": (
        lambda i: f"{b64({'alg': 'RS256'})}.{b64([1, 2])}.{b64(b'x')}",
        "malformed_token",
    ),
    "non-ASCII token": (lambda i: "é" + i.issuer.token(), "malformed_token"),
    "critical header extension": (
        lambda i: i.issuer.token(headers={"crit": ["exp"], "exp": 1}),
        "malformed_token",
    ),
    "huge token": (lambda i: i.issuer.token(padding="x" * 20_000), "token_too_large"),
    "missing exp": (lambda i: i.issuer.token(exp=None), "missing_claim"),
    "missing sub": (lambda i: i.issuer.token(sub=None), "missing_claim"),
    "missing iss": (lambda i: i.issuer.token(iss=None), "missing_claim"),
    "exp not a number": (lambda i: i.issuer.token(exp="tomorrow"), "invalid_claim"),
    "exp is a boolean": (lambda i: i.issuer.token(exp=True), "invalid_claim"),
    "aud not a string": (lambda i: i.issuer.token(aud={"x": 1}), "invalid_claim"),
    "a Keycloak ID token": (lambda i: i.issuer.token(typ="ID", aud="billing-api"), "unsupported_token_type"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
async def test_hostile_token_is_refused_with_401_invalid_token(
    idp: IdpDouble, make_phase: PhaseFactory, name: str
) -> None:
    build, reason = HOSTILE[name]
    phase = make_phase(audiences=["billing-api"], max_token_bytes=8192)
    token = build(idp)
    valid = idp.issuer.token(aud="billing-api")
    assert await phase(ctx_for(bearer(valid))) is None  # the same phase accepts a good token

    decision = await phase(ctx_for(bearer(token)))

    assert decision is not None
    assert (decision.http_status, decision.outcome, decision.reason) == (401, Outcome.UNAUTHENTICATED, reason)
    challenge = decision.response_headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="stoa", error="invalid_token", error_description="')
    assert token[:20] not in challenge and idp.issuer.active.kid not in challenge


async def test_audience_may_be_matched_by_azp(idp: IdpDouble, make_phase: PhaseFactory) -> None:
    token = idp.issuer.token(aud="account", azp="billing-api")
    assert await make_phase(audiences=["billing-api"])(ctx_for(bearer(token))) is None
    refused = await make_phase(audiences=["billing-api"], check_azp=False)(ctx_for(bearer(token)))
    assert refused is not None and refused.reason == "wrong_audience"


async def test_per_issuer_audiences_apply(idp: IdpDouble, make_phase: PhaseFactory) -> None:
    phase = make_phase(issuers=[{"issuer": ISSUER_URL, "audiences": ["orders-api"]}])
    assert await phase(ctx_for(bearer(idp.issuer.token(aud=["x", "orders-api"])))) is None
    refused = await phase(ctx_for(bearer(idp.issuer.token(aud="billing-api", azp="app"))))
    assert refused is not None and refused.reason == "wrong_audience"


async def test_algorithm_allow_list_is_configurable(idp: IdpDouble, make_phase: PhaseFactory) -> None:
    key = idp.issuer.rotate("ES256")
    decision = await make_phase(algorithms=["RS256"])(ctx_for(bearer(idp.issuer.token(key=key))))
    assert decision is not None and decision.reason == "unsupported_algorithm"


async def test_token_without_kid_uses_the_only_fitting_key(idp: IdpDouble, make_phase: PhaseFactory) -> None:
    import jwt

    token = jwt.encode(idp.issuer.claims(), idp.issuer.active.private_key, algorithm="RS256")
    assert await make_phase()(ctx_for(bearer(token))) is None
    idp.issuer.rotate("RS256")  # now two RSA keys: without a kid the key is ambiguous
    decision = await make_phase()(ctx_for(bearer(token)))
    assert decision is not None and decision.reason == "unknown_key"
