"""OAuth 2.0 for ``stoa-link mcp --stdio``: the bridge gets, caches and renews its own bearer tokens.

A desktop client launches the bridge with a client id and secret in its environment (or the secret
in a file); the bridge then:

- finds the token endpoint: the MCP server's protected-resource metadata (RFC 9728,
  ``/.well-known/oauth-protected-resource{path}``, which STOA Link serves) names the authorization
  server and the resource; that server's ``/.well-known/openid-configuration`` (or RFC 8414
  ``oauth-authorization-server``) names the token endpoint and must name the same issuer.
  ``STOA_MCP_ISSUER`` pins the authorization server, so the MCP server cannot send the secret
  elsewhere (and is the way in when the server publishes no metadata);
- asks for a token (``client_credentials``, RFC 8707 ``resource`` = the MCP server), keeps it in a
  cache file only its user can read (0600, refused when looser), and renews it before it expires:
  with the refresh token when the authorization server issued one, else with a new grant;
- on a 401 from the MCP server (a token revoked, a key rotated, clocks apart) renews once and retries.

A client without a secret is a public client (a person, not a service): ``stoa-link mcp --login``
signs in once with the authorization code flow and PKCE through a loopback redirect (RFC 8252,
:meth:`TokenSource.sign_in`), leaving a refresh token in the cache; the bridge then
only ever refreshes, and asks for a new sign-in when the refresh token is refused.

Failures never raise into the MCP transport (that would wedge the SDK's request loop): a request
goes out without a token, the server answers 401, and the bridge's error explains why the token is
missing, using :attr:`TokenSource.last_failure`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import anyio
import httpx2

__all__ = [
    "CACHE_ENV",
    "CLIENT_ID_ENV",
    "CLIENT_SECRET_ENV",
    "CLIENT_SECRET_FILE_ENV",
    "ISSUER_ENV",
    "SCOPE_ENV",
    "BearerAuth",
    "OAuthClient",
    "OAuthConfigError",
    "SignInError",
    "Token",
    "TokenCache",
    "TokenSource",
]

CLIENT_ID_ENV = "STOA_MCP_CLIENT_ID"
CLIENT_SECRET_ENV = "STOA_MCP_CLIENT_SECRET"
CLIENT_SECRET_FILE_ENV = "STOA_MCP_CLIENT_SECRET_FILE"
ISSUER_ENV = "STOA_MCP_ISSUER"
SCOPE_ENV = "STOA_MCP_SCOPE"
CACHE_ENV = "STOA_MCP_TOKEN_CACHE"  # a file path, or "off"

_log = logging.getLogger("stoa.link.stdio")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_RENEW_MARGIN_S = 60.0  # renew this long before expiry (a quarter of the lifetime for short tokens)
_MAX_DOCUMENT_BYTES = 256 * 1024


class OAuthConfigError(Exception):
    """The OAuth environment is unusable (exit code 2, naming the variable)."""


class SignInError(Exception):
    """The interactive sign-in did not complete; the message says why, in a line."""


class _Failure(Exception):
    """One OAuth step failed; the message is the reason, in a line, without secrets."""


@dataclass(frozen=True, slots=True)
class OAuthClient:
    """The bridge's OAuth client (confidential with a secret, else public) and where to keep its tokens."""

    client_id: str
    client_secret: str | None  # None: a public client (signs in with the authorization code flow)
    issuer: str | None = None
    scope: str | None = None
    cache: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OAuthClient | None:
        """The client of the environment; None when no client id is set."""
        client_id = env.get(CLIENT_ID_ENV, "").strip()
        if not client_id:
            if env.get(CLIENT_SECRET_ENV) or env.get(CLIENT_SECRET_FILE_ENV):
                raise OAuthConfigError(f"{CLIENT_ID_ENV}: required with a client secret")
            return None
        secret = _secret(env) if CLIENT_SECRET_ENV in env or CLIENT_SECRET_FILE_ENV in env else None
        issuer = env.get(ISSUER_ENV, "").strip().rstrip("/") or None
        if issuer is not None:
            _check_endpoint(issuer, ISSUER_ENV, OAuthConfigError)
        scope = " ".join(env.get(SCOPE_ENV, "").split()) or None
        return cls(client_id, secret, issuer, scope, _cache_path(env))


def _secret(env: Mapping[str, str]) -> str:
    inline, path = env.get(CLIENT_SECRET_ENV), env.get(CLIENT_SECRET_FILE_ENV)
    if inline is not None and path is not None:
        raise OAuthConfigError(f"{CLIENT_SECRET_ENV} and {CLIENT_SECRET_FILE_ENV}: set one, not both")
    if path is not None:
        try:
            inline = Path(path).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise OAuthConfigError(f"{CLIENT_SECRET_FILE_ENV}: cannot read {path}: {type(exc).__name__}") from None
        name = CLIENT_SECRET_FILE_ENV
    else:
        name = CLIENT_SECRET_ENV
    secret = (inline or "").strip()
    if not secret or any(c in secret for c in "\r\n"):
        raise OAuthConfigError(f"{name}: required with {CLIENT_ID_ENV}, a single non-empty line")
    return secret


def _cache_path(env: Mapping[str, str]) -> Path | None:
    given = env.get(CACHE_ENV, "").strip()
    if given.lower() == "off":
        return None
    if given:
        return Path(given).expanduser()
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stoa-link" / "mcp-tokens.json"


def _check_endpoint(url: str, what: str, error: type[Exception] = _Failure) -> None:
    """OAuth endpoints are https (RFC 6749 §3.1/3.2), or http on loopback (a local provider)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.netloc:
        return
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return
    raise error(f"{what}: {url!r} is not an https URL (credentials would travel unencrypted)")


@dataclass(frozen=True, slots=True)
class Token:
    """An access token, when to renew it, and the refresh token that came with it."""

    access_token: str
    expires_at: float | None  # None: the authorization server gave no lifetime
    renew_at: float | None
    refresh_token: str | None = None

    @classmethod
    def from_response(cls, body: Any, now: float) -> Token:
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str) or not body["access_token"]:
            raise _Failure("the token endpoint answered without an access_token")
        if str(body.get("token_type", "bearer")).lower() != "bearer":
            raise _Failure(f"the token endpoint issued a {body.get('token_type')!r} token, not a bearer token")
        lifetime = body.get("expires_in")
        expires_at = renew_at = None
        if isinstance(lifetime, int | float | str) and str(lifetime).isdigit():
            seconds = float(lifetime)
            expires_at = now + seconds
            renew_at = expires_at - min(_RENEW_MARGIN_S, seconds / 4)
        refresh = body.get("refresh_token")
        return cls(body["access_token"], expires_at, renew_at, refresh if isinstance(refresh, str) else None)

    def due(self, now: float) -> bool:
        return self.renew_at is not None and now >= self.renew_at

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


class TokenCache:
    """Tokens kept between launches in one JSON file that only its owner may read or write.

    A desktop client starts the bridge for every session; without the cache each start would cost a
    token request. The client secret is never written. A file that others can read, or that another
    user owns, is not trusted (nor overwritten): the bridge warns and keeps its tokens in memory.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._usable = True

    def load(self, key: str) -> Token | None:
        entries = self._read()
        raw = entries.get(key)
        if not isinstance(raw, dict) or not isinstance(raw.get("access_token"), str):
            return None
        def number(name: str) -> float | None:
            value = raw.get(name)
            return float(value) if isinstance(value, int | float) else None
        refresh = raw.get("refresh_token")
        return Token(raw["access_token"], number("expires_at"), number("renew_at"),
                     refresh if isinstance(refresh, str) else None)

    def save(self, key: str, token: Token | None) -> None:
        if not self._usable:
            return
        entries = self._read()
        if token is None:
            entries.pop(key, None)
        else:
            entries[key] = {"access_token": token.access_token, "expires_at": token.expires_at,
                            "renew_at": token.renew_at, "refresh_token": token.refresh_token}
        now = time.time()
        # Expired entries without a refresh token are worth nothing: keep the file small.
        entries = {k: v for k, v in entries.items() if isinstance(v, dict) and (
            v.get("refresh_token") or not isinstance(v.get("expires_at"), int | float) or v["expires_at"] > now)}
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump({"version": 1, "tokens": entries}, out)
            os.replace(tmp, self.path)
        except OSError as exc:
            self._usable = False
            _log.warning("stoa-link mcp --stdio: cannot write the token cache %s (%s); tokens stay in memory",
                         self.path, type(exc).__name__)

    def _read(self) -> dict[str, Any]:
        if not self._usable:
            return {}
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return {}
        except OSError:
            return {}
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO) or info.st_uid != os.getuid() \
                or not stat.S_ISREG(info.st_mode):
            self._usable = False
            _log.warning("stoa-link mcp --stdio: ignoring the token cache %s: it must be a file of yours with "
                         "mode 0600 (it is %o)", self.path, stat.S_IMODE(info.st_mode))
            return {}
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # a damaged cache is rewritten whole on the next save
        tokens = doc.get("tokens") if isinstance(doc, dict) else None
        return dict(tokens) if isinstance(tokens, dict) else {}


@dataclass(frozen=True, slots=True)
class _Endpoint:
    token_url: str
    authorization_url: str | None
    resource: str
    issuer: str


class TokenSource:
    """Access tokens for one MCP server from one OAuth client, renewed before they expire.

    A confidential client renews by refresh token or a new ``client_credentials`` grant; a public
    client only by refresh token, after :meth:`sign_in`.
    """

    def __init__(self, credentials: OAuthClient, server_url: str, http: httpx2.AsyncClient,
                 clock: Callable[[], float] = time.time) -> None:
        self._creds = credentials
        self._server_url = server_url
        self._http = http  # no auth of its own: OAuth requests never go through BearerAuth
        self._clock = clock
        self._lock = anyio.Lock()
        self._cache = TokenCache(credentials.cache) if credentials.cache is not None else None
        self._key = f"{server_url} {credentials.client_id} {credentials.scope or ''}"
        self._endpoint: _Endpoint | None = None
        self._token: Token | None = self._cache.load(self._key) if self._cache is not None else None
        self.last_failure: str | None = None  # why there is no usable token (for the client's error)

    async def token(self) -> str | None:
        """A token to send now (renewed first when due); None when none can be had."""
        current = self._token
        if current is not None and not current.due(self._clock()):
            return current.access_token
        async with self._lock:
            current = self._token
            now = self._clock()
            if current is not None and not current.due(now):
                return current.access_token  # another request renewed it meanwhile
            try:
                return (await self._renew(current)).access_token
            except _Failure as exc:
                self._failed(str(exc))
                if current is not None and not current.expired(now):
                    return current.access_token  # still valid: keep going, try again on the next request
                return None

    async def renew(self, refused: str | None) -> str | None:
        """After the server refused ``refused``: a new token, or None (then the refusal stands)."""
        async with self._lock:
            current = self._token
            if current is not None and refused is not None and current.access_token != refused \
                    and not current.expired(self._clock()):
                return current.access_token  # renewed by another request since
            try:
                # A token the server refused may have been revoked with its refresh token: start afresh
                # only if refreshing fails.
                return (await self._renew(current)).access_token
            except _Failure as exc:
                self._failed(str(exc))
                self._store(None)
                return None

    async def sign_in(self, redirect_uri: str, authorize: Callable[[str], Awaitable[Mapping[str, str]]]) -> None:
        """The authorization code flow with PKCE (RFC 7636) for a public client; raises SignInError.

        ``authorize`` shows the user the authorization URL and returns the query of the redirect to
        ``redirect_uri`` (a loopback URL, RFC 8252 §7.3).
        """
        try:
            endpoint = await self._discover()
        except _Failure as exc:
            raise SignInError(str(exc)) from None
        if endpoint.authorization_url is None:
            raise SignInError(f"{endpoint.issuer} publishes no authorization_endpoint")
        verifier = secrets.token_urlsafe(64)  # 86 characters of the unreserved set (RFC 7636 §4.1)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        state = secrets.token_urlsafe(24)
        query = {"response_type": "code", "client_id": self._creds.client_id, "redirect_uri": redirect_uri,
                 "state": state, "code_challenge": challenge, "code_challenge_method": "S256",
                 "resource": endpoint.resource, **({"scope": self._creds.scope} if self._creds.scope else {})}
        separator = "&" if "?" in endpoint.authorization_url else "?"
        answer = await authorize(f"{endpoint.authorization_url}{separator}{urlencode(query)}")
        if not hmac.compare_digest(answer.get("state", ""), state):
            raise SignInError("the sign-in answer carries another state: not the sign-in this command started")
        if "error" in answer:
            detail = answer.get("error_description")
            raise SignInError(f"{endpoint.issuer} refused the sign-in: {answer['error']}"
                              + (f" ({detail})" if detail else ""))
        code = answer.get("code", "")
        if not code:
            raise SignInError("the sign-in answer carries no code")
        try:
            token = await self._grant(endpoint, {"grant_type": "authorization_code", "code": code,
                                                 "redirect_uri": redirect_uri, "code_verifier": verifier})
        except _Failure as exc:
            raise SignInError(str(exc)) from None
        self.last_failure = None
        self._store(token)

    def _failed(self, reason: str) -> None:
        self.last_failure = reason
        _log.error("stoa-link mcp --stdio: no token for %s: %s", self._server_url, reason)

    def _store(self, token: Token | None) -> None:
        self._token = token
        if self._cache is not None:
            self._cache.save(self._key, token)

    async def _renew(self, current: Token | None) -> Token:
        newer = self._newer_in_cache(current)
        if newer is not None:
            if not newer.due(self._clock()):
                self._token = newer
                return newer
            current = newer  # its refresh token is the live one
        endpoint = await self._discover()
        token: Token | None = None
        if current is not None and current.refresh_token:
            with contextlib.suppress(_Failure):  # an expired or revoked refresh token: a new grant then
                token = await self._grant(endpoint, {"grant_type": "refresh_token",
                                                     "refresh_token": current.refresh_token})
            if token is not None and token.refresh_token is None:
                # RFC 6749 §6: a refresh answer may keep the refresh token it was given.
                token = Token(token.access_token, token.expires_at, token.renew_at, current.refresh_token)
        if token is None:
            if self._creds.client_secret is None:
                raise _Failure(f"client {self._creds.client_id!r} has no valid sign-in; run "
                               f"`stoa-link mcp --login --url {self._server_url}` with the same environment")
            form = {"grant_type": "client_credentials", **({"scope": self._creds.scope} if self._creds.scope else {})}
            token = await self._grant(endpoint, form)
        self.last_failure = None
        self._store(token)
        return token

    def _newer_in_cache(self, current: Token | None) -> Token | None:
        """A token another bridge process of the same client stored since (several desktop servers share
        one cache; with rotating refresh tokens, only the newest refresh token still works)."""
        if self._cache is None:
            return None
        cached = self._cache.load(self._key)
        if cached is None or (current is not None and cached.access_token == current.access_token):
            return None
        return cached

    async def _grant(self, endpoint: _Endpoint, form: dict[str, str]) -> Token:
        body = {**form, "resource": endpoint.resource}
        secret = self._creds.client_secret
        if secret is None:
            body["client_id"] = self._creds.client_id  # a public client identifies itself (RFC 6749 §3.2.1)
        try:
            if secret is None:
                response = await self._http.post(endpoint.token_url, data=body)
            else:
                response = await self._http.post(endpoint.token_url, data=body, auth=(self._creds.client_id, secret))
        except httpx2.HTTPError as exc:
            raise _Failure(f"token endpoint {endpoint.token_url} unreachable ({type(exc).__name__})") from None
        doc = _json(response)
        if response.status_code != 200:
            error = doc.get("error") if isinstance(doc, dict) else None
            detail = doc.get("error_description") if isinstance(doc, dict) else None
            what = f"{error}: {detail}" if error and detail else (error or f"HTTP {response.status_code}")
            raise _Failure(f"{endpoint.issuer} refused client {self._creds.client_id!r} "
                           f"({form['grant_type']}, HTTP {response.status_code}, {what})")
        return Token.from_response(doc, self._clock())

    async def _discover(self) -> _Endpoint:
        if self._endpoint is not None:
            return self._endpoint
        metadata = await self._resource_metadata()
        resource = self._server_url
        servers: list[str] = []
        if metadata is not None:
            resource = str(metadata.get("resource") or resource)
            if not _covers(resource, self._server_url):
                # RFC 9728 §3.3: else a server could have us mint (and send it) a token for another API.
                raise _Failure(f"{self._server_url} claims to be the resource {resource!r}; refused")
            listed = metadata.get("authorization_servers")
            servers = [str(s).rstrip("/") for s in listed] if isinstance(listed, list) else []
        issuer = self._creds.issuer
        if issuer is None:
            if not servers:
                raise _Failure(f"{self._server_url} names no authorization server; set {ISSUER_ENV}")
            issuer = servers[0]
            _log.warning("stoa-link mcp --stdio: using the authorization server %s named by %s; set %s to pin it",
                         issuer, self._server_url, ISSUER_ENV)
        elif servers and issuer not in servers:
            raise _Failure(f"{self._server_url} accepts tokens of {', '.join(servers)}, not of {ISSUER_ENV}={issuer}")
        token_url, authorization_url = await self._endpoints(issuer)
        self._endpoint = _Endpoint(token_url, authorization_url, resource, issuer)
        return self._endpoint

    async def _resource_metadata(self) -> dict[str, Any] | None:
        parts = urlsplit(self._server_url)
        origin = f"{parts.scheme}://{parts.netloc}"
        path = parts.path.rstrip("/")
        candidates = [f"{origin}/.well-known/oauth-protected-resource{path}"] if path else []
        candidates.append(f"{origin}/.well-known/oauth-protected-resource")
        for url in candidates:
            doc = await self._document(url)
            if doc is not None:
                return doc
        return None

    async def _endpoints(self, issuer: str) -> tuple[str, str | None]:
        parts = urlsplit(issuer)
        origin, path = f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")
        for url in (f"{issuer}/.well-known/openid-configuration",
                    f"{origin}/.well-known/oauth-authorization-server{path}"):
            doc = await self._document(url)
            if doc is None:
                continue
            if str(doc.get("issuer", "")).rstrip("/") != issuer:
                # RFC 8414 §3.3: metadata for another issuer is a mix-up, not a fallback.
                raise _Failure(f"{url} describes issuer {doc.get('issuer')!r}, not {issuer}")
            token_url = doc.get("token_endpoint")
            if not isinstance(token_url, str) or not token_url:
                raise _Failure(f"{url} names no token_endpoint")
            _check_endpoint(token_url, "token_endpoint")
            authorization_url = doc.get("authorization_endpoint")
            if isinstance(authorization_url, str) and authorization_url:
                _check_endpoint(authorization_url, "authorization_endpoint")
                return token_url, authorization_url
            return token_url, None
        raise _Failure(f"no OpenID/OAuth metadata for issuer {issuer}")

    async def _document(self, url: str) -> dict[str, Any] | None:
        """A JSON metadata document; None when absent (404 and the like); unreachable is a failure."""
        try:
            response = await self._http.get(url, headers={"accept": "application/json"})
        except httpx2.HTTPError as exc:
            raise _Failure(f"cannot fetch {url} ({type(exc).__name__})") from None
        if response.status_code >= 500:
            raise _Failure(f"{url} answered HTTP {response.status_code}")
        if response.status_code != 200:
            return None
        doc = _json(response)
        return doc if isinstance(doc, dict) else None


def _covers(resource: str, url: str) -> bool:
    """Whether ``resource`` is ``url`` or a parent of it (same origin, whole path segments)."""
    r, u = urlsplit(resource), urlsplit(url)
    if (r.scheme, r.netloc.lower()) != (u.scheme, u.netloc.lower()) or r.query or r.fragment:
        return False
    base = r.path.rstrip("/")
    return u.path.rstrip("/") == base or u.path.startswith(base + "/")


def _json(response: httpx2.Response) -> Any:
    if len(response.content) > _MAX_DOCUMENT_BYTES:
        return None
    try:
        return response.json()
    except ValueError:
        return None


class BearerAuth(httpx2.Auth):
    """Sends the source's token with each request; on a 401, renews it once and sends the request again."""

    def __init__(self, source: TokenSource) -> None:
        self._source = source

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        token = await self._source.token()
        if token is not None:
            request.headers["authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        renewed = await self._source.renew(token)
        if renewed is None or renewed == token:
            return
        request.headers["authorization"] = f"Bearer {renewed}"
        yield request
