"""OAuth 2.0 Token Exchange (RFC 8693): a token for the tool's upstream, with the MCP caller as subject.

The MCP authorization spec forbids passing the caller's token to upstream
APIs (the "token passthrough" anti-pattern: the upstream would accept a token
not meant for it, and Link would become a confused deputy). Instead Link, as
an OAuth client of the issuer (``mcp.token_exchange_client_id`` and the
secret named by ``mcp.token_exchange_client_secret_ref``), asks the issuer's
token endpoint for a token whose audience is the tool's upstream::

    grant_type=urn:ietf:params:oauth:grant-type:token-exchange
    subject_token=<caller's token>  subject_token_type=...:access_token
    requested_token_type=...:access_token  audience=<tool's>  [resource=…] [scope=…]

Keycloak implements this grant at its token endpoint. Exchanged tokens are
cached until shortly before they expire, keyed by a hash of the caller's
token and what was asked for; concurrent calls for one key share one
exchange. Any failure is a :class:`TokenExchangeError`, which the tool call
reports as a clean tool error; the caller's token is never sent instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from link import jsonsafe
from link.model import CredentialKind, Principal
from link.registry.model import TokenExchange
from link.settings import Settings
from mcp_server.secrets import SecretError, SecretStore

__all__ = ["GRANT_TYPE", "TokenExchangeError", "TokenExchanger", "token_exchanger"]

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
_ACCEPTED_ISSUED_TYPES = frozenset({ACCESS_TOKEN_TYPE, "urn:ietf:params:oauth:token-type:jwt"})
_DEFAULT_LIFETIME_S = 60.0  # when the issuer states no expires_in
_log = logging.getLogger("stoa.mcp.exchange")


class TokenExchangeError(Exception):
    """No token for the upstream; ``status`` is the tool call's status, the message names no secret."""

    def __init__(self, kind: str, message: str, status: int) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


@dataclass(frozen=True, slots=True)
class _Exchanged:
    token: str
    reuse_until: float


class TokenExchanger:
    """Exchanges callers' tokens at the issuer's token endpoint, with a bounded cache."""

    def __init__(
        self,
        token_url: str | None,
        client_id: str,
        client_secret_ref: str | None,
        secrets: SecretStore,
        *,
        timeout_s: float = 5.0,
        refresh_margin_s: float = 30.0,
        cache_size: int = 10_000,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = token_url
        self._client_id = client_id
        self._secret_ref = client_secret_ref
        self._secrets = secrets
        self._timeout = timeout_s
        self._margin = refresh_margin_s
        self._size = cache_size
        self._transport = transport
        self._clock = clock
        self._cache: OrderedDict[tuple[str, str, str, str], _Exchanged] = OrderedDict()
        self._pending: dict[tuple[str, str, str, str], asyncio.Future[_Exchanged]] = {}
        self._client: httpx.AsyncClient | None = None
        self.exchanges = 0  # requests sent to the issuer (for tests and metrics)

    async def token_for(self, principal: Principal, spec: TokenExchange) -> str:
        """A token for ``spec``'s audience with ``principal`` as subject; raises TokenExchangeError."""
        if principal.kind is not CredentialKind.JWT or not principal.token:
            raise TokenExchangeError(
                "token_exchange_no_subject", "this tool acts on behalf of the caller: it needs an OAuth token",
                401)
        key = (hashlib.sha256(principal.token.encode()).hexdigest(), spec.audience, spec.resource or "",
               spec.scope or "")
        hit = self._cache.get(key)
        if hit is not None and hit.reuse_until > self._clock():
            self._cache.move_to_end(key)
            return hit.token
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._pending[key] = pending
            try:
                exchanged = await self._exchange(principal.token, spec)
            except BaseException as exc:
                # Waiters must never hang on an exchange that ended otherwise (e.g. its caller was cancelled).
                failure = exc if isinstance(exc, TokenExchangeError) else TokenExchangeError(
                    "token_exchange_interrupted", "the token exchange was interrupted", 502)
                pending.set_exception(failure)
                pending.exception()  # retrieved here: waiters (if any) get it too
                raise
            finally:
                del self._pending[key]
            pending.set_result(exchanged)
            self._remember(key, exchanged)
            return exchanged.token
        return (await asyncio.shield(pending)).token

    def _remember(self, key: tuple[str, str, str, str], exchanged: _Exchanged) -> None:
        if self._size <= 0 or exchanged.reuse_until <= self._clock():
            return
        self._cache[key] = exchanged
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)

    async def _exchange(self, subject_token: str, spec: TokenExchange) -> _Exchanged:
        if not self._url:
            raise TokenExchangeError("token_exchange_unconfigured",
                                     "token exchange is not configured (mcp.token_exchange_url)", 502)
        if not self._secret_ref:
            raise TokenExchangeError("token_exchange_unconfigured", "token exchange has no client secret "
                                     "(mcp.token_exchange_client_secret_ref)", 502)
        try:
            secret = self._secrets.read(self._secret_ref)
        except SecretError as exc:
            raise TokenExchangeError("token_exchange_unconfigured", str(exc), 502) from None
        form = {"grant_type": GRANT_TYPE, "subject_token": subject_token, "subject_token_type": ACCESS_TOKEN_TYPE,
                "requested_token_type": ACCESS_TOKEN_TYPE, "audience": spec.audience}
        if spec.resource:
            form["resource"] = spec.resource
        if spec.scope:
            form["scope"] = spec.scope
        started = self._clock()
        self.exchanges += 1
        try:
            response = await self._http().post(self._url, data=form, auth=(self._client_id, secret),
                                                headers={"accept": "application/json"})
        except httpx.TimeoutException:
            raise TokenExchangeError("token_exchange_timeout",
                                     f"the issuer did not answer the token exchange within {self._timeout:g}s",
                                     504) from None
        except httpx.HTTPError as exc:
            raise TokenExchangeError("token_exchange_unreachable",
                                     f"the issuer's token endpoint could not be reached ({type(exc).__name__})",
                                     502) from None
        return self._read(response, started)

    def _read(self, response: httpx.Response, started: float) -> _Exchanged:
        try:
            doc = jsonsafe.loads(response.content, max_depth=8, max_bytes=64 * 1024)
        except jsonsafe.JsonRefused:
            doc = None
        if response.status_code != 200:
            error = doc.get("error") if isinstance(doc, dict) else None
            code = error if isinstance(error, str) and error.isascii() and len(error) < 64 else "no error code"
            _log.warning("token exchange refused by the issuer: HTTP %s %s", response.status_code, code)
            raise TokenExchangeError("token_exchange_refused",
                                     f"the issuer refused the token exchange (HTTP {response.status_code}: {code})",
                                     502)
        token = doc.get("access_token") if isinstance(doc, dict) else None
        token_type = doc.get("token_type") if isinstance(doc, dict) else None
        issued = doc.get("issued_token_type", ACCESS_TOKEN_TYPE) if isinstance(doc, dict) else None
        if (not isinstance(token, str) or not token or not token.isascii() or any(c in token for c in "\r\n ")
                or not isinstance(token_type, str) or token_type.lower() not in ("bearer", "n_a")
                or issued not in _ACCEPTED_ISSUED_TYPES):
            raise TokenExchangeError("token_exchange_invalid_answer",
                                     "the issuer's token exchange answer holds no usable access token", 502)
        expires_in = doc.get("expires_in") if isinstance(doc, dict) else None
        lifetime = float(expires_in) if isinstance(expires_in, int | float) and not isinstance(
            expires_in, bool) and expires_in > 0 else _DEFAULT_LIFETIME_S
        return _Exchanged(token=token, reuse_until=started + lifetime - self._margin)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # Created lazily so it belongs to the event loop that uses it.
            self._client = httpx.AsyncClient(transport=self._transport, timeout=httpx.Timeout(self._timeout),
                                             follow_redirects=False)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def token_exchanger(settings: Settings, secrets: SecretStore) -> TokenExchanger:
    """The exchanger the settings describe (token URL default: the Keycloak realm's token endpoint)."""
    mcp, ids = settings.mcp, settings.identity
    url = mcp.token_exchange_url
    if not url and ids.keycloak_url:
        url = f"{ids.keycloak_url.rstrip('/')}/realms/{ids.keycloak_realm}/protocol/openid-connect/token"
    return TokenExchanger(url, mcp.token_exchange_client_id, mcp.token_exchange_client_secret_ref, secrets,
                          timeout_s=mcp.token_exchange_timeout_s, refresh_margin_s=mcp.token_exchange_refresh_margin_s,
                          cache_size=mcp.token_exchange_cache_size)
