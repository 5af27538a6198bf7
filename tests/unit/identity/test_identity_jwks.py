"""The JWKS cache: single-flight refresh, minimum interval, rotation, stale keys, readiness."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from link.identity.jwks import FetchError, parse_jwks
from link.identity.metrics import JWKS_REFRESH_SKIPPED
from link.model import Outcome
from link.pipeline.identity import IdentityPhase
from tests.harness.oidc import Issuer, KeyPair, mock_transport
from tests.unit.identity.support import ISSUER_URL, IdpDouble, bearer, ctx_for, identity_settings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def phase_with_clock(idp: IdpDouble, clock: FakeClock, **identity: Any) -> IdentityPhase:
    identity.setdefault("jwks_min_refresh_interval_s", 10)
    return IdentityPhase(identity_settings(**identity), transport=idp.transport, monotonic=clock)


async def test_known_kid_never_fetches_on_the_request_path(idp: IdpDouble) -> None:
    phase = phase_with_clock(idp, FakeClock())
    await phase.start()
    try:
        assert idp.jwks_fetches == 1
        for sub in ("a", "b", "c"):
            assert await phase(ctx_for(bearer(idp.issuer.token(sub=sub)))) is None
        assert idp.jwks_fetches == 1
    finally:
        await phase.stop()


async def test_flood_of_unknown_kids_fetches_at_most_once_per_interval(idp: IdpDouble) -> None:
    clock = FakeClock()
    phase = phase_with_clock(idp, clock)
    await phase.start()
    skipped = JWKS_REFRESH_SKIPPED.labels(ISSUER_URL)
    try:
        strangers = [KeyPair.generate("ES256") for _ in range(20)]

        async def flood() -> list[Any]:
            return await asyncio.gather(
                *(
                    phase(ctx_for(bearer(strangers[i % 20].sign(idp.issuer.claims(sub=f"u{i}")))))
                    for i in range(200)
                )
            )

        before = skipped._value.get()
        decisions = await flood()  # right after start: inside the interval, nothing is fetched
        assert idp.jwks_fetches == 1
        assert skipped._value.get() - before == 200
        assert {(d.http_status, d.reason) for d in decisions} == {(401, "unknown_key")}

        clock.now += 11  # the interval has passed: one fetch, shared by the whole flood
        decisions = await flood()
        assert idp.jwks_fetches == 2
        assert {(d.http_status, d.reason) for d in decisions} == {(401, "unknown_key")}
    finally:
        await phase.stop()


async def test_rotated_key_is_picked_up_on_its_first_token(idp: IdpDouble) -> None:
    clock = FakeClock()
    phase = phase_with_clock(idp, clock)
    await phase.start()
    try:
        old_key = idp.issuer.active
        old_token = idp.issuer.token(sub="old")
        assert await phase(ctx_for(bearer(old_token))) is None
        idp.issuer.rotate("RS256", keep_old=False)
        clock.now += 11
        ctx = ctx_for(bearer(idp.issuer.token(sub="new")))
        assert await phase(ctx) is None and ctx.principal.subject == "new"
        assert idp.jwks_fetches == 2
        # A new token from the withdrawn key is refused; the one verified before stays cached.
        refused = await phase(ctx_for(bearer(idp.issuer.token(key=old_key, sub="late"))))
        assert refused is not None and refused.reason == "unknown_key"
        assert await phase(ctx_for(bearer(old_token))) is None
        assert idp.jwks_fetches == 2  # the miss came inside the minimum interval
    finally:
        await phase.stop()


async def test_stale_keys_serve_while_provider_is_down_then_expire(idp: IdpDouble) -> None:
    clock = FakeClock()
    phase = phase_with_clock(idp, clock, jwks_ttl_s=60, jwks_stale_max_s=600, token_cache_size=0)
    await phase.start()
    try:
        idp.down.set()
        clock.now += 300  # past the TTL: keys are stale, the provider unreachable
        assert await phase(ctx_for(bearer(idp.issuer.token(sub="during-outage")))) is None
        await asyncio.sleep(0.01)  # let the background refresh the stale read kicked off fail
        assert phase.readiness()[0] is True
        assert "stale" in phase.readiness()[1]

        clock.now += 400  # past ttl + stale_max: the keys are dropped
        decision = await phase(ctx_for(bearer(idp.issuer.token(sub="too-late"))))
        assert decision is not None
        assert (decision.http_status, decision.outcome, decision.reason) == (
            503,
            Outcome.ERROR,
            "keys_unavailable",
        )
        assert "www-authenticate" not in decision.response_headers
        assert phase.readiness()[0] is False

        idp.down.clear()
        clock.now += 11
        assert await phase(ctx_for(bearer(idp.issuer.token(sub="recovered")))) is None
        assert phase.readiness()[0] is True
    finally:
        await phase.stop()


async def test_provider_down_at_start_makes_link_unready_until_keys_load(idp: IdpDouble) -> None:
    idp.down.set()
    phase = phase_with_clock(idp, FakeClock(), jwks_min_refresh_interval_s=0.01)
    await phase.start()
    try:
        ready, detail = phase.readiness()
        assert ready is False and "HTTP 503" in detail
        idp.down.clear()
        for _ in range(200):  # the background loop retries with a short backoff
            if phase.readiness()[0]:
                break
            await asyncio.sleep(0.01)
        assert phase.readiness() == (True, f"{ISSUER_URL}: 1 signing keys")
    finally:
        await phase.stop()


async def test_no_issuer_configured_is_ready_and_refuses_tokens() -> None:
    phase = IdentityPhase(identity_settings(issuers=[]))
    await phase.start()
    try:
        assert phase.readiness()[0] is True
        decision = await phase(ctx_for(bearer(Issuer(ISSUER_URL).token())))
        assert decision is not None and decision.reason == "unknown_issuer"
    finally:
        await phase.stop()


async def test_discovery_naming_another_issuer_is_refused() -> None:
    issuer = Issuer(ISSUER_URL)
    liar = Issuer(ISSUER_URL, keys=issuer.keys)

    def discovery(base: str | None = None) -> dict[str, Any]:
        return {
            "issuer": "https://elsewhere.example.test",
            "jwks_uri": f"{ISSUER_URL}/protocol/openid-connect/certs",
        }

    liar.discovery = discovery  # type: ignore[method-assign]
    phase = IdentityPhase(identity_settings(), transport=mock_transport(liar))
    await phase.start()
    try:
        ready, detail = phase.readiness()
        assert ready is False and "elsewhere" in detail
        decision = await phase(ctx_for(bearer(issuer.token())))
        assert decision is not None and decision.http_status == 503
    finally:
        await phase.stop()


async def test_keycloak_realm_is_discovered_and_its_public_issuer_adopted() -> None:
    # Link reaches Keycloak on an internal URL; tokens name the public hostname.
    internal = "http://keycloak.internal:8080"
    public = Issuer("https://login.example.test/realms/stoa")
    served = Issuer(f"{internal}/realms/stoa", keys=public.keys)

    def discovery(base: str | None = None) -> dict[str, Any]:
        return {"issuer": public.url, "jwks_uri": f"{served.url}/protocol/openid-connect/certs"}

    served.discovery = discovery  # type: ignore[method-assign]
    phase = IdentityPhase(
        identity_settings(issuers=[], keycloak_url=internal), transport=mock_transport(served)
    )
    await phase.start()
    try:
        assert phase.readiness()[0] is True
        assert await phase(ctx_for(bearer(public.token()))) is None
    finally:
        await phase.stop()


def test_parse_jwks_keeps_only_public_signing_keys() -> None:
    rsa, ec, ed = (KeyPair.generate(a) for a in ("RS256", "ES256", "EdDSA"))
    private = {**rsa.public_jwk(), "kid": "private", "d": "AQAB"}
    doc = {
        "keys": [
            rsa.public_jwk(),
            ec.public_jwk(),
            ed.public_jwk(),
            {**rsa.public_jwk(), "kid": "enc", "use": "enc"},
            {**rsa.public_jwk(), "kid": "wrap", "key_ops": ["wrapKey"]},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {**rsa.public_jwk(), "kid": "rsa-oaep", "alg": "RSA-OAEP"},
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            private,
            "not a key",
        ]
    }
    keys = parse_jwks(doc)
    assert sorted(k.kid or "" for k in keys) == sorted([rsa.kid, ec.kid, ed.kid])
    by_kid = {k.kid: k for k in keys}
    assert by_kid[rsa.kid].accepts("RS256") and by_kid[rsa.kid].accepts("PS256") is False  # alg pinned
    assert by_kid[ec.kid].accepts("ES256") and not by_kid[ec.kid].accepts("ES384")
    assert by_kid[ed.kid].accepts("EdDSA") and not by_kid[ed.kid].accepts("HS256")


@pytest.mark.parametrize(
    "doc", [None, [], {"keys": "x"}, {"keys": []}, {"keys": [{"kty": "oct", "k": "AA"}]}]
)
def test_parse_jwks_rejects_documents_without_usable_keys(doc: object) -> None:
    with pytest.raises(FetchError):
        parse_jwks(doc)


async def test_rotation_without_kids_is_found_through_a_refresh(idp: IdpDouble) -> None:
    import jwt

    clock = FakeClock()
    phase = phase_with_clock(idp, clock)
    await phase.start()
    try:
        new = idp.issuer.rotate("RS256", keep_old=False)
        token = jwt.encode(idp.issuer.claims(sub="kidless"), new.private_key, algorithm="RS256")
        refused = await phase(ctx_for(bearer(token)))  # inside the interval: no refresh, old key fails
        assert refused is not None and refused.reason == "bad_signature" and idp.jwks_fetches == 1
        clock.now += 11
        assert await phase(ctx_for(bearer(token))) is None
        assert idp.jwks_fetches == 2
    finally:
        await phase.stop()


class HangingTransport(httpx.AsyncBaseTransport):
    """The issuer's transport behind a gate: while ``released`` is clear, requests wait (a hung provider)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner
        self.released = asyncio.Event()
        self.waiting = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.waiting += 1
        try:
            await asyncio.wait_for(self.released.wait(), timeout=30)  # bounded: a test never hangs forever
        finally:
            self.waiting -= 1
        return await self._inner.handle_async_request(request)


async def _bounded(coro: Any) -> Any:
    # A safety bound for the test run only: the assertion is that the answer comes while the
    # provider still hangs (the gate is never opened before it), not how fast it comes.
    return await asyncio.wait_for(coro, timeout=10)


async def test_unknown_kid_while_provider_hangs_is_refused_at_once_then_found(idp: IdpDouble) -> None:
    hanging = HangingTransport(idp.transport)
    hanging.released.set()
    phase = IdentityPhase(identity_settings(jwks_min_refresh_interval_s=0), transport=hanging)
    await phase.start()
    try:
        new_key = idp.issuer.rotate("ES256")
        hanging.released.clear()
        token = idp.issuer.token(key=new_key, sub="rotated")
        answers = [await _bounded(phase(ctx_for(bearer(token)))) for _ in range(5)]

        assert hanging.waiting == 1  # one fetch in flight, shared by every miss
        for decision in answers:
            assert decision is not None
            assert (decision.http_status, decision.reason) == (401, "unknown_key")
        assert idp.jwks_fetches == 1  # the hung fetch has not reached the provider's handler yet

        hanging.released.set()  # the fetch lands behind the refused requests
        for _ in range(200):
            if hanging.waiting == 0 and phase.readiness()[1].startswith(f"{ISSUER_URL}: 2 "):
                break
            await asyncio.sleep(0.01)
        ctx = ctx_for(bearer(token))
        assert await phase(ctx) is None and ctx.principal.subject == "rotated"
    finally:
        hanging.released.set()
        await phase.stop()


async def test_first_fetch_hanging_answers_503_at_once_and_keys_arrive_behind(idp: IdpDouble) -> None:
    # No keys were ever loaded (the provider hung from the start): a request must not join the
    # first fetch for longer than the miss budget; "keys unavailable" is an outage, so 503.
    hanging = HangingTransport(idp.transport)
    phase = IdentityPhase(identity_settings(jwks_min_refresh_interval_s=0), transport=hanging)
    token = idp.issuer.token(sub="early")
    try:
        first = await _bounded(phase(ctx_for(bearer(token))))
        again = await _bounded(phase(ctx_for(bearer(token))))
        assert hanging.waiting == 1
        for decision in (first, again):
            assert decision is not None
            assert (decision.http_status, decision.outcome, decision.reason) == (
                503, Outcome.ERROR, "keys_unavailable")
        hanging.released.set()
        for _ in range(200):
            if phase.readiness()[0]:
                break
            await asyncio.sleep(0.01)
        assert await phase(ctx_for(bearer(token))) is None
    finally:
        hanging.released.set()
        await phase.stop()
