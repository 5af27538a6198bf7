"""The caller's credentials, found and verified: bearer JWT, API key or client certificate.

One :class:`Authenticator` per process owns the issuers' keys, the
verified-token cache and the API keys. The identity phase asks it for the
principal of each request; the MCP server can ask it for a bearer token's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import httpx

from link.identity.apikeys import ApiKeyStore
from link.identity.cache import VerifiedTokenCache, token_key
from link.identity.claims import TenantMapping, principal_from_claims
from link.identity.errors import Reason, invalid_request, invalid_token
from link.identity.http import HttpJsonFetcher
from link.identity.jwks import IssuerKeys, IssuerSource, KeyRing, KeyTiming
from link.identity.metrics import TOKEN_CACHE
from link.identity.mtls import peer_from_xfcc, principal_from_peer
from link.identity.tokens import TokenRules, TokenVerifier
from link.model import CredentialKind, PeerIdentity, Principal, Request
from link.settings import IdentitySettings

__all__ = ["Authenticator", "issuer_sources"]

_log = logging.getLogger("stoa.link.identity")


def issuer_sources(ids: IdentitySettings) -> list[IssuerSource]:
    """Keycloak's realm (when ``keycloak_url`` is set) first, then the configured issuers."""
    sources: list[IssuerSource] = []
    if ids.keycloak_url:
        issuer = f"{ids.keycloak_url.rstrip('/')}/realms/{ids.keycloak_realm}"
        # Keycloak is often reached on an internal URL while tokens name its public one.
        sources.append(IssuerSource(issuer=issuer, discovery_url=f"{issuer}/.well-known/openid-configuration",
                                    adopt_discovered_issuer=True))
    for spec in ids.issuers:
        sources.append(IssuerSource(issuer=spec.issuer, discovery_url=spec.discovery_url,
                                    jwks_uri=spec.jwks_uri, audiences=tuple(spec.audiences)))
    return sources


def _bearer_token(authorization: str) -> str | None:
    """The token of ``Bearer <token>``; None for other schemes (not ours to judge)."""
    scheme, _, rest = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = rest.strip()
    if not token or " " in token:
        raise invalid_request(Reason.MALFORMED_AUTHORIZATION, "malformed bearer credentials")
    return token


class Authenticator:
    """Verifies credentials; a Component (background key refresh and API key reload)."""

    name = "identity"

    def __init__(self, ids: IdentitySettings, *, transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._ids = ids
        self._clock = clock
        self._fetcher = HttpJsonFetcher(ids.jwks_fetch_timeout_s, transport)
        timing = KeyTiming(ttl_s=ids.jwks_ttl_s, min_refresh_interval_s=ids.jwks_min_refresh_interval_s,
                           stale_max_s=ids.jwks_stale_max_s, miss_wait_s=ids.jwks_miss_wait_ms / 1000)
        self.keyring = KeyRing([IssuerKeys(s, self._fetcher, timing, monotonic) for s in issuer_sources(ids)])
        self._verifier = TokenVerifier(self.keyring, TokenRules(
            algorithms=frozenset(ids.algorithms),
            audiences=tuple(ids.audiences),
            check_azp=ids.check_azp,
            leeway_s=ids.leeway_s,
            max_token_bytes=ids.max_token_bytes,
            required_claims=tuple(ids.required_claims),
        ), clock)
        # Entries also end with the key TTL, so a key the provider withdrew stops counting soon.
        self._cache = VerifiedTokenCache(ids.token_cache_size, max_age_s=ids.jwks_ttl_s)
        self._tenants = TenantMapping(ids.tenant_claim, dict(ids.consumer_tenants), ids.default_tenant)
        self.api_keys = ApiKeyStore(ids.api_keys_file) if ids.api_keys_file else None
        self._api_key_header = ids.api_key_header.lower()
        self._cache_hit = TOKEN_CACHE.labels("hit")
        self._cache_miss = TOKEN_CACHE.labels("miss")
        self._reload_task: asyncio.Task[None] | None = None

    # -- credentials ----------------------------------------------------------
    async def authenticate(self, request: Request, kinds: tuple[CredentialKind, ...]) -> Principal:
        """The principal of the first accepted credential the request carries.

        Order: bearer token, API key, client certificate. A credential that is
        present but bad is refused, never skipped for a weaker one.
        """
        headers = request.headers
        if CredentialKind.JWT in kinds:
            authorization = headers.get("authorization")
            if authorization is not None:
                token = _bearer_token(authorization)
                if token is not None:
                    return await self.verify_token(token)
        if CredentialKind.API_KEY in kinds:
            raw = headers.get(self._api_key_header)
            if raw is not None:
                return self.verify_api_key(raw)
        if CredentialKind.MTLS in kinds:
            peer = self._peer(request)
            if peer is not None:
                principal = principal_from_peer(peer, self._tenants)
                if principal is None:
                    raise invalid_token(Reason.INVALID_CLIENT_CERT, "client certificate names no identity")
                return self._with_tenant(principal)
        raise invalid_request(Reason.MISSING_CREDENTIALS, "missing credentials")

    async def verify_token(self, token: str) -> Principal:
        """The principal of a bearer token; the signature is checked once per token lifetime."""
        if len(token) > self._ids.max_token_bytes:
            raise invalid_token(Reason.TOKEN_TOO_LARGE, "token too large")
        key = token_key(token)
        now = self._clock()
        principal = self._cache.get(key, now)
        if principal is not None:
            self._cache_hit.inc()
            return principal
        self._cache_miss.inc()
        verified = await self._verifier.verify(token)
        principal = self._with_tenant(principal_from_claims(
            verified.claims, issuer=verified.issuer, token=token, expires_at=verified.expires_at,
            tenants=self._tenants,
        ))
        self._cache.put(key, principal, verified.expires_at, now)
        return principal

    def verify_api_key(self, raw: str) -> Principal:
        """The principal an API key maps to."""
        principal = self.api_keys.lookup(raw.strip()) if self.api_keys is not None else None
        if principal is None:
            raise invalid_token(Reason.INVALID_API_KEY, "invalid API key")
        return principal

    def _peer(self, request: Request) -> PeerIdentity | None:
        if request.peer is not None:
            return request.peer
        if self._ids.mtls_trust_xfcc:
            xfcc = request.headers.get("x-forwarded-client-cert")
            if xfcc:
                try:
                    return peer_from_xfcc(xfcc)
                except ValueError:
                    raise invalid_request(Reason.INVALID_CLIENT_CERT, "malformed client certificate header") \
                        from None
        return None

    def _with_tenant(self, principal: Principal) -> Principal:
        if self._ids.require_tenant and not principal.tenant:
            raise invalid_token(Reason.NO_TENANT, "no tenant for this caller")
        return principal

    # -- lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        """Fetch every issuer's keys once, then keep keys and API keys fresh in the background."""
        await self.keyring.start()
        if self.api_keys is not None:
            self._reload_task = asyncio.create_task(self._reload_api_keys(self.api_keys), name="api-keys")

    async def _reload_api_keys(self, store: ApiKeyStore) -> None:
        while True:
            await asyncio.sleep(self._ids.api_keys_reload_s)
            try:
                await asyncio.to_thread(store.reload_if_changed)
            except Exception:  # the loop must outlive any surprise; the store keeps its keys
                _log.exception("API key reload failed")

    async def stop(self) -> None:
        if self._reload_task is not None:
            self._reload_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reload_task
            self._reload_task = None
        await self.keyring.stop()
        await self._fetcher.close()

    def readiness(self) -> tuple[bool, str]:
        """Not ready while no issuer's keys could be loaded, or API keys never loaded."""
        ok, detail = self.keyring.readiness()
        if self.api_keys is not None:
            keys_ok, keys_detail = self.api_keys.readiness()
            ok, detail = ok and keys_ok, f"{detail}; {keys_detail}"
        return ok, detail
