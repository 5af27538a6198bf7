"""The token exchanger against a scripted token endpoint: the request it sends, what it accepts back,
caching, single flight, and failures that never fall back to the caller's token."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest

from link.model import ANONYMOUS, CredentialKind, Principal
from link.registry.model import TokenExchange
from mcp_server.exchange import GRANT_TYPE, TokenExchangeError, TokenExchanger
from mcp_server.secrets import SecretStore

URL = "http://idp.test/realms/stoa/protocol/openid-connect/token"
CALLER = Principal(kind=CredentialKind.JWT, subject="alice", consumer="app", tenant="t", token="caller-token")
SPEC = TokenExchange(audience="billing-api", resource="https://billing.internal/", scope="invoices:read")


class Endpoint:
    def __init__(self, answer: httpx.Response | None = None) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.gate is not None:
            await self.gate.wait()
        n = len(self.requests)
        return self.answer or httpx.Response(200, json={
            "access_token": f"exchanged-{n}", "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer", "expires_in": 300})


def _exchanger(tmp_path: Path, endpoint: Endpoint, now: list[float], **kw: object) -> TokenExchanger:
    (tmp_path / "client").write_text("s3cret\n")
    return TokenExchanger(URL, "stoa-link", "client", SecretStore(tmp_path),
                          transport=httpx.MockTransport(endpoint), clock=lambda: now[0], **kw)  # type: ignore[arg-type]


async def test_the_request_is_an_rfc8693_exchange_with_client_credentials(tmp_path: Path) -> None:
    endpoint = Endpoint()
    token = await _exchanger(tmp_path, endpoint, [1000.0]).token_for(CALLER, SPEC)
    [request] = endpoint.requests
    form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
    assert token == "exchanged-1"
    assert form == {"grant_type": GRANT_TYPE, "subject_token": "caller-token",
                    "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
                    "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
                    "audience": "billing-api", "resource": "https://billing.internal/", "scope": "invoices:read"}
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"stoa-link:s3cret").decode()


async def test_tokens_are_reused_until_the_margin_before_expiry_per_caller_and_audience(tmp_path: Path) -> None:
    endpoint, now = Endpoint(), [1000.0]
    ex = _exchanger(tmp_path, endpoint, now, refresh_margin_s=30.0)
    bob = Principal(kind=CredentialKind.JWT, subject="bob", consumer="app", tenant="t", token="bob-token")
    other = TokenExchange(audience="crm-api")
    assert await ex.token_for(CALLER, SPEC) == "exchanged-1"
    assert await ex.token_for(CALLER, SPEC) == "exchanged-1"
    assert await ex.token_for(bob, SPEC) == "exchanged-2"
    assert await ex.token_for(CALLER, other) == "exchanged-3"
    now[0] += 269
    assert await ex.token_for(CALLER, SPEC) == "exchanged-1"
    now[0] += 1  # 270 s = 300 s lifetime - 30 s margin
    assert await ex.token_for(CALLER, SPEC) == "exchanged-4"


async def test_the_cache_is_bounded(tmp_path: Path) -> None:
    endpoint = Endpoint()
    ex = _exchanger(tmp_path, endpoint, [0.0], cache_size=2)
    callers = [Principal(kind=CredentialKind.JWT, subject=str(i), consumer="app", tenant="t", token=f"t{i}") for i in range(3)]
    for p in callers:
        await ex.token_for(p, SPEC)
    await ex.token_for(callers[0], SPEC)  # evicted: exchanged again
    assert len(endpoint.requests) == 4


async def test_concurrent_calls_share_one_exchange_and_one_failure(tmp_path: Path) -> None:
    endpoint = Endpoint()
    endpoint.gate = asyncio.Event()
    ex = _exchanger(tmp_path, endpoint, [0.0])
    tasks = [asyncio.create_task(ex.token_for(CALLER, SPEC)) for _ in range(5)]
    await asyncio.sleep(0.01)
    endpoint.gate.set()
    assert set(await asyncio.gather(*tasks)) == {"exchanged-1"}
    assert len(endpoint.requests) == 1
    refusing = Endpoint(httpx.Response(400, json={"error": "invalid_grant"}))
    refusing.gate = asyncio.Event()
    ex = _exchanger(tmp_path, refusing, [0.0])
    tasks = [asyncio.create_task(ex.token_for(CALLER, SPEC)) for _ in range(3)]
    await asyncio.sleep(0.01)
    refusing.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, TokenExchangeError) and r.kind == "token_exchange_refused" for r in results)
    assert len(refusing.requests) == 1


@pytest.mark.parametrize(("answer", "kind"), [
    (httpx.Response(400, json={"error": "invalid_grant"}), "token_exchange_refused"),
    (httpx.Response(401, json={"error": "invalid_client"}), "token_exchange_refused"),
    (httpx.Response(500, content=b"<html>"), "token_exchange_refused"),
    (httpx.Response(200, json={"token_type": "Bearer"}), "token_exchange_invalid_answer"),
    (httpx.Response(200, json={"access_token": "", "token_type": "Bearer"}), "token_exchange_invalid_answer"),
    (httpx.Response(200, json={"access_token": "a\r\nx-evil: 1", "token_type": "Bearer"}),
     "token_exchange_invalid_answer"),
    (httpx.Response(200, json={"access_token": "a", "token_type": "mac"}), "token_exchange_invalid_answer"),
    (httpx.Response(200, json={"access_token": "a", "token_type": "Bearer",
                               "issued_token_type": "urn:ietf:params:oauth:token-type:refresh_token"}),
     "token_exchange_invalid_answer"),
    (httpx.Response(200, content=b"[" * 10_000), "token_exchange_invalid_answer"),
    (httpx.Response(200, content=b"not json"), "token_exchange_invalid_answer"),
])
async def test_unusable_answers_are_typed_errors_never_the_callers_token(
        tmp_path: Path, answer: httpx.Response, kind: str) -> None:
    with pytest.raises(TokenExchangeError) as err:
        await _exchanger(tmp_path, Endpoint(answer), [0.0]).token_for(CALLER, SPEC)
    assert err.value.kind == kind and "caller-token" not in str(err.value) and "s3cret" not in str(err.value)


async def test_no_subject_token_no_secret_or_no_url_are_errors(tmp_path: Path) -> None:
    endpoint = Endpoint()
    ex = _exchanger(tmp_path, endpoint, [0.0])
    api_key = Principal(kind=CredentialKind.API_KEY, subject="app", consumer="app", tenant="t")
    for who in (ANONYMOUS, api_key):
        with pytest.raises(TokenExchangeError, match="needs an OAuth token"):
            await ex.token_for(who, SPEC)
    for broken in (TokenExchanger(None, "c", "client", SecretStore(tmp_path)),
                   TokenExchanger(URL, "c", None, SecretStore(tmp_path)),
                   TokenExchanger(URL, "c", "missing", SecretStore(tmp_path))):
        with pytest.raises(TokenExchangeError) as err:
            await broken.token_for(CALLER, SPEC)
        assert err.value.kind == "token_exchange_unconfigured"
    assert endpoint.requests == []


async def test_short_lived_tokens_and_missing_expiry(tmp_path: Path) -> None:
    body = {"access_token": "a", "token_type": "Bearer", "expires_in": 10}
    endpoint = Endpoint(httpx.Response(200, content=json.dumps(body).encode()))
    ex = _exchanger(tmp_path, endpoint, [0.0], refresh_margin_s=30.0)
    await ex.token_for(CALLER, SPEC)
    await ex.token_for(CALLER, SPEC)
    assert len(endpoint.requests) == 2  # lives less than the margin: never reused
