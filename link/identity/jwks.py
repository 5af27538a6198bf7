"""Signing keys of the trusted token issuers: discovery, a JWKS cache per issuer, refresh rules.

The request path only reads keys that are already in memory. A token whose
``kid`` is unknown may trigger one refresh, but refreshes are single-flight
(concurrent misses share one fetch) and at most one per minimum interval, so
a flood of tokens with random ``kid`` values never becomes a flood of fetches.
A request waits for such a fetch at most ``KeyTiming.miss_wait_s``: a provider
that hangs must not hold requests past Envoy's ext_authz timeout (which would
turn a 401 into Envoy's own 503). The fetch finishes behind; the next token
with that ``kid`` finds the key.
When the provider is unreachable the last keys keep serving until
``ttl + stale_max`` after the last successful fetch, then they are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from link.backoff import Backoff
from link.identity.errors import Reason, invalid_token, unavailable
from link.identity.metrics import JWKS_FETCHES, JWKS_KEYS, JWKS_REFRESH_SKIPPED

__all__ = [
    "FetchError",
    "IssuerKeys",
    "IssuerSource",
    "JsonFetcher",
    "KeyRing",
    "KeyTiming",
    "SigningKey",
    "parse_jwks",
]

_log = logging.getLogger("stoa.link.identity")

# Which key type (and curve) each accepted algorithm needs: a token cannot pick
# an algorithm the key was not made for (e.g. HS256 "signed" with an RSA key).
_KEY_FAMILY: dict[str, tuple[str, frozenset[str]]] = {
    "RS256": ("RSA", frozenset()),
    "RS384": ("RSA", frozenset()),
    "RS512": ("RSA", frozenset()),
    "PS256": ("RSA", frozenset()),
    "PS384": ("RSA", frozenset()),
    "PS512": ("RSA", frozenset()),
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}
_MAX_KEYS = 100


def _well_known(issuer: str) -> str:
    return f"{issuer.rstrip('/')}/.well-known/openid-configuration"


class FetchError(Exception):
    """A discovery or JWKS document could not be fetched or read."""


class JsonFetcher(Protocol):
    """Fetches one JSON document over HTTP (see :class:`link.identity.http.HttpJsonFetcher`)."""

    async def get_json(self, url: str) -> object: ...


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One public key from a JWKS."""

    kid: str | None
    kty: str
    crv: str | None
    alg: str | None  # the JWK's own "alg", when it pins one
    key: Any  # a cryptography public key object

    def accepts(self, alg: str) -> bool:
        """True when a token signed with ``alg`` may be verified with this key."""
        if self.alg is not None and self.alg != alg:
            return False
        family = _KEY_FAMILY.get(alg)
        if family is None:
            return False
        kty, curves = family
        return self.kty == kty and (not curves or self.crv in curves)


def _build_key(jwk: Mapping[str, Any]) -> SigningKey | None:
    """A usable verification key, or None for keys we must not or cannot use."""
    kty = jwk.get("kty")
    use = jwk.get("use")
    if use is not None and use != "sig":
        return None
    ops = jwk.get("key_ops")
    if isinstance(ops, list) and "verify" not in ops:
        return None
    if "d" in jwk:  # a private key published in a JWKS is a provider bug: never trust it
        return None
    kid = jwk.get("kid")
    alg = jwk.get("alg")
    crv = jwk.get("crv")
    if kid is not None and not isinstance(kid, str):
        return None
    if alg is not None and alg not in _KEY_FAMILY:
        return None
    try:
        if kty == "RSA":
            key: Any = RSAAlgorithm.from_jwk(dict(jwk))
        elif kty == "EC":
            key = ECAlgorithm.from_jwk(dict(jwk))
        elif kty == "OKP":
            key = OKPAlgorithm.from_jwk(dict(jwk))
        else:
            return None
    except Exception:  # malformed key material: skip this key, keep the others
        return None
    return SigningKey(kid=kid, kty=str(kty), crv=crv if isinstance(crv, str) else None,
                      alg=alg if isinstance(alg, str) else None, key=key)


def parse_jwks(doc: object) -> list[SigningKey]:
    """The usable signing keys of a JWKS document; ``FetchError`` when it is not one."""
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise FetchError("not a JWKS document (no 'keys' list)")
    keys = [k for k in (_build_key(j) for j in doc["keys"][:_MAX_KEYS] if isinstance(j, dict)) if k]
    if not keys:
        raise FetchError("JWKS holds no usable signing key")
    return keys


@dataclass(frozen=True, slots=True)
class IssuerSource:
    """Where an issuer's keys come from.

    ``issuer`` is the ``iss`` value tokens must carry. With ``adopt_discovered_issuer``
    (Keycloak, reached on an internal URL) the discovery document's ``issuer``
    is accepted too; otherwise a discovery document naming another issuer is refused.
    """

    issuer: str
    discovery_url: str | None = None
    jwks_uri: str | None = None
    audiences: tuple[str, ...] = ()
    adopt_discovered_issuer: bool = False

    @property
    def label(self) -> str:
        return self.issuer


@dataclass(frozen=True, slots=True)
class KeyTiming:
    """Cache rules shared by every issuer."""

    ttl_s: float = 300.0
    min_refresh_interval_s: float = 10.0
    stale_max_s: float = 3600.0
    miss_wait_s: float = 0.05  # longest a request waits for a key fetch; the fetch goes on behind


class IssuerKeys:
    """The JWKS cache of one issuer."""

    def __init__(self, source: IssuerSource, fetcher: JsonFetcher, timing: KeyTiming,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self._fetcher = fetcher
        self._timing = timing
        self._clock = clock
        self._discovered_issuer: str | None = None
        self._jwks_uri = source.jwks_uri
        self._by_kid: dict[str, SigningKey] = {}
        self._keys: list[SigningKey] = []
        self._fresh_until = 0.0
        self._usable_until = 0.0
        self._last_attempt = -1e18
        self._last_error = ""
        self._inflight: asyncio.Task[bool] | None = None
        self._fetches_ok = JWKS_FETCHES.labels(source.label, "ok")
        self._fetches_error = JWKS_FETCHES.labels(source.label, "error")
        self._skipped = JWKS_REFRESH_SKIPPED.labels(source.label)
        self._gauge = JWKS_KEYS.labels(source.label)

    # -- reading (no I/O) -----------------------------------------------------
    def matches(self, iss: str) -> bool:
        """True when tokens carrying this ``iss`` belong to this issuer."""
        return iss == self.source.issuer or iss == self._discovered_issuer

    @property
    def audiences(self) -> tuple[str, ...]:
        return self.source.audiences

    def has_keys(self) -> bool:
        """True while some keys are usable (fresh, or stale within the bound)."""
        self._expire_if_too_old()
        return bool(self._keys)

    def lookup(self, kid: str | None, alg: str) -> SigningKey | None:
        """The key for this ``kid`` (or, without a kid, the only key that fits ``alg``)."""
        self._expire_if_too_old()
        if kid is not None:
            return self._by_kid.get(kid)
        fitting = [k for k in self._keys if k.accepts(alg)]
        return fitting[0] if len(fitting) == 1 else None

    def status(self) -> str:
        """One line for readiness details."""
        if self.has_keys():
            stale = " (stale)" if self._clock() >= self._fresh_until else ""
            return f"{len(self._keys)} signing keys{stale}"
        return f"no keys: {self._last_error or 'not fetched yet'}"

    def _expire_if_too_old(self) -> None:
        if self._keys and self._clock() >= self._usable_until:
            _log.warning("signing keys of %s expired after %ss without a successful refresh",
                         self.source.label, self._timing.ttl_s + self._timing.stale_max_s)
            self._keys = []
            self._by_kid = {}
            self._gauge.set(0)

    # -- the request path ---------------------------------------------------
    async def key_for(self, kid: str | None, alg: str) -> SigningKey:
        """The verification key for a token header; refreshes at most as the rules allow.

        Raises :class:`AuthError`: ``unknown_key`` (401) or ``keys_unavailable`` (503),
        within ``miss_wait_s`` whatever the provider does.
        """
        key = self.lookup(kid, alg)
        if key is not None:
            if self._clock() >= self._fresh_until:
                self._kick()  # stale but usable: refresh in the background, answer now
            return key
        await self.refresh_if_allowed()
        key = self.lookup(kid, alg)
        if key is not None:
            return key
        if not self._keys:
            raise unavailable(Reason.KEYS_UNAVAILABLE, "signing keys unavailable")
        raise invalid_token(Reason.UNKNOWN_KEY, "unknown signing key")

    async def refresh_if_allowed(self) -> None:
        """Refresh on a miss: join a fetch under way, else start one if the minimum interval has passed.

        Waits at most ``miss_wait_s``: a fetch still running then is left to finish behind.
        """
        if self._inflight is not None and not self._inflight.done():
            fetch = self._inflight
        elif self._clock() - self._last_attempt >= self._timing.min_refresh_interval_s:
            fetch = self._inflight = asyncio.ensure_future(self._fetch())
        else:
            self._skipped.inc()
            return
        # asyncio.wait never cancels what it waits for: the shared fetch outlives this request
        await asyncio.wait({fetch}, timeout=self._timing.miss_wait_s)

    def _kick(self) -> None:
        if (self._inflight is None or self._inflight.done()) and (
            self._clock() - self._last_attempt >= self._timing.min_refresh_interval_s
        ):
            self._inflight = asyncio.ensure_future(self._fetch())

    # -- refreshing ----------------------------------------------------------
    async def refresh(self) -> bool:
        """Fetch the keys now, sharing a fetch already under way; True on success."""
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(self._fetch())
        # shield: a caller giving up (request cancelled) must not cancel the shared fetch
        return await asyncio.shield(self._inflight)

    async def _fetch(self) -> bool:
        self._last_attempt = self._clock()
        try:
            uri = self._jwks_uri or await self._discover()
            keys = parse_jwks(await self._fetcher.get_json(uri))
        except Exception as exc:  # any failure is "no new keys": keep serving the old ones
            self._last_error = str(exc) if isinstance(exc, FetchError) else f"{type(exc).__name__}"
            self._fetches_error.inc()
            if self.source.jwks_uri is None:
                self._jwks_uri = None  # rediscover next time: the provider may have moved it
            _log.warning("refreshing signing keys of %s failed: %s", self.source.label, exc)
            return False
        now = self._clock()
        self._keys = keys
        self._by_kid = {k.kid: k for k in keys if k.kid is not None}
        self._fresh_until = now + self._timing.ttl_s
        self._usable_until = self._fresh_until + self._timing.stale_max_s
        self._last_error = ""
        self._fetches_ok.inc()
        self._gauge.set(len(keys))
        return True

    async def _discover(self) -> str:
        url = self.source.discovery_url or _well_known(self.source.issuer)
        doc = await self._fetcher.get_json(url)
        if not isinstance(doc, dict):
            raise FetchError(f"discovery document at {url} is not a JSON object")
        jwks_uri = doc.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            raise FetchError(f"discovery document at {url} has no valid jwks_uri")
        issuer = doc.get("issuer")
        if issuer != self.source.issuer:
            if not (self.source.adopt_discovered_issuer and isinstance(issuer, str) and issuer):
                raise FetchError(f"discovery document at {url} names issuer {issuer!r}, "
                                 f"expected {self.source.issuer!r}")
            self._discovered_issuer = issuer
        self._jwks_uri = jwks_uri
        return jwks_uri

    async def run(self) -> None:
        """Background loop: refresh before the TTL ends; retry with backoff after failures."""
        # From the refresh interval up to the TTL, never more than a minute between tries.
        base = max(self._timing.min_refresh_interval_s, 0.2)
        cap = min(max(self._timing.ttl_s, base), 60.0)
        backoff = Backoff(min(base, cap), cap)
        while True:
            wait = self._fresh_until - self._clock()
            if self._keys and wait > 0:
                backoff.reset()
                await asyncio.sleep(wait)
                continue
            if await self.refresh():
                backoff.reset()
                continue
            await asyncio.sleep(backoff.next_delay())


class KeyRing:
    """Every trusted issuer's keys, with their background refresh."""

    def __init__(self, issuers: list[IssuerKeys]) -> None:
        self.issuers = issuers
        self._tasks: list[asyncio.Task[None]] = []

    def for_issuer(self, iss: str) -> IssuerKeys | None:
        for keys in self.issuers:
            if keys.matches(iss):
                return keys
        return None

    async def start(self) -> None:
        """Load every issuer's keys once (failures are retried in the background)."""
        if self.issuers:
            await asyncio.gather(*(k.refresh() for k in self.issuers))
        self._tasks = [asyncio.create_task(k.run(), name=f"jwks:{k.source.label}") for k in self.issuers]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def readiness(self) -> tuple[bool, str]:
        """Ready when no issuer is configured or at least one has usable keys."""
        if not self.issuers:
            return True, "no token issuers configured"
        ok = any(k.has_keys() for k in self.issuers)
        return ok, "; ".join(f"{k.source.label}: {k.status()}" for k in self.issuers)
