"""Tokens whose header or claims name a member twice are refused, however well they are signed.

JSON parsers disagree on duplicates (first-wins, last-wins, error); a token that
means ``sub=alice`` to Link and ``sub=admin`` to a verifier behind it is an
identity confusion. Every token here carries a *valid* signature from the
issuer's active key, so the refusal can only come from the duplicate check.
"""

from __future__ import annotations

import base64
import itertools
import time
from collections.abc import Callable

import pytest
from jwt.algorithms import get_default_algorithms

from link.model import Outcome
from tests.harness.oidc import KeyPair
from tests.unit.identity.support import ISSUER_URL, IdpDouble, PhaseFactory, bearer, ctx_for


def _b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()


def signed(key: KeyPair, header_json: str, payload_json: str) -> str:
    """A compact JWS over raw JSON text (so duplicates survive), signed with ``key``."""
    signing_input = f"{_b64(header_json)}.{_b64(payload_json)}"
    algorithm = get_default_algorithms()[key.alg]
    signature = algorithm.sign(signing_input.encode(), key.private_key)
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def _q(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


def _claims(extra: str = "", **override: object) -> str:
    now = int(time.time())
    base: dict[str, object] = {"iss": ISSUER_URL, "sub": "alice", "aud": "billing-api", "azp": "billing-app",
                               "iat": now, "exp": now + 300}
    base.update(override)
    members = [f'"{k}":{_q(v)}' for k, v in base.items()]
    return "{" + ",".join(members) + extra + "}"


def _header(key: KeyPair, extra: str = "") -> str:
    return f'{{"alg":"{key.alg}","typ":"JWT","kid":"{key.kid}"{extra}}}'


Builder = Callable[[KeyPair], str]

_NOW = int(time.time())
# A duplicate of each claim a verifier or a policy reads, in both orders (the attacker's value
# first, then last), so neither first-wins nor last-wins parsing can be what lets it through.
_CLAIM_DUPLICATES: dict[str, tuple[object, object]] = {
    "sub": ("alice", "admin"),
    "iss": (ISSUER_URL, "https://evil.example.test/realms/stoa"),
    "aud": ("billing-api", "other-api"),
    "exp": (_NOW + 300, _NOW + 10**8),
    "nbf": (_NOW, _NOW - 10),
    "azp": ("billing-app", "admin-console"),
    "tenant": ("acme", "globex"),
    "scope": ("invoices:read", "admin"),
    "typ": ("Bearer", "ID"),
}

CORPUS: dict[str, Builder] = {}
for _name, (_a, _b) in _CLAIM_DUPLICATES.items():
    for _first, _last in ((_a, _b), (_b, _a)):
        CORPUS[f"payload {_name} twice ({_first!s:.12} then {_last!s:.12})"] = (
            lambda k, n=_name, f=_first, la=_last: signed(k, _header(k), _claims(f',"{n}":{_q(la)}', **{n: f}))
        )
CORPUS.update({
    "payload the same sub twice with the same value": lambda k: signed(k, _header(k), _claims(',"sub":"alice"')),
    "payload nested duplicate in realm_access": lambda k: signed(
        k, _header(k), _claims(',"realm_access":{"roles":["user"],"roles":["admin"]}')),
    "payload duplicate two levels deep": lambda k: signed(
        k, _header(k), _claims(',"resource_access":{"billing":{"roles":["r"],"roles":["w"]}}')),
    "payload duplicate inside an object in an array": lambda k: signed(
        k, _header(k), _claims(',"orgs":[{"id":"a"},{"id":"b","id":"c"}]')),
    "payload duplicate spelled with a unicode escape": lambda k: signed(
        k, _header(k), _claims(',"\\u0073ub":"admin"')),
    "header alg twice": lambda k: signed(k, _header(k, ',"alg":"none"'), _claims()),
    "header alg twice, none first": lambda k: signed(
        k, f'{{"alg":"none","typ":"JWT","kid":"{k.kid}","alg":"{k.alg}"}}', _claims()),
    "header kid twice": lambda k: signed(k, _header(k, ',"kid":"other-kid"'), _claims()),
    "header kid twice, other first": lambda k: signed(
        k, f'{{"alg":"{k.alg}","kid":"other-kid","kid":"{k.kid}"}}', _claims()),
    "header typ twice": lambda k: signed(k, _header(k, ',"typ":"at+jwt"'), _claims()),
    "header crit twice": lambda k: signed(k, _header(k, ',"crit":[],"crit":[]'), _claims()),
})


async def test_the_signing_helper_makes_tokens_the_phase_accepts(idp: IdpDouble, make_phase: PhaseFactory) -> None:
    # Guards the corpus: without duplicates, the same construction is a valid token.
    phase = make_phase(audiences=["billing-api"])
    for alg in ("RS256", "ES256", "EdDSA"):
        key = idp.issuer.rotate(alg)
        assert await phase(ctx_for(bearer(signed(key, _header(key), _claims())))) is None


@pytest.mark.parametrize(("name", "alg"), list(itertools.product(CORPUS, ["RS256", "ES256"])))
async def test_duplicate_member_is_refused_with_401(
    idp: IdpDouble, make_phase: PhaseFactory, name: str, alg: str
) -> None:
    key = idp.issuer.rotate(alg)
    phase = make_phase(audiences=["billing-api"])
    token = CORPUS[name](key)

    decision = await phase(ctx_for(bearer(token)))

    assert decision is not None
    assert (decision.http_status, decision.outcome, decision.reason) == (
        401, Outcome.UNAUTHENTICATED, "duplicate_member")
    assert 'error="invalid_token", error_description="duplicate member in token"' in (
        decision.response_headers["www-authenticate"])
