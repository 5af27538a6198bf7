"""Identity phase: who is calling.

Secure by default: a request is refused with 401 unless it carries a valid
credential of a kind its route accepts, or its route is declared anonymous (a
request that matches no route is not anonymous). The route's required scopes
are checked here too (403 ``insufficient_scope``). Refusals follow RFC 6750:
``WWW-Authenticate: Bearer`` with ``error`` and a short ``error_description``;
internal reasons go to metrics and the decision, never to the client.

The principal's headers for the upstream (``x-stoa-tenant`` …) and the removal
of client-sent ``x-stoa-*`` headers are the response phase's work.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from prometheus_client import Counter

from link.identity.authenticator import Authenticator
from link.identity.errors import AuthError, Reason, invalid_request
from link.identity.metrics import AUTHENTICATED, REFUSALS
from link.model import ANONYMOUS, CredentialKind, Decision, Outcome, Principal, RequestContext, RouteMatch
from link.settings import Settings

__all__ = ["IdentityPhase", "build_identity_phase"]

_REALM = "stoa"


def _challenge(error: str, description: str, scope: str = "") -> str:
    value = f'Bearer realm="{_REALM}", error="{error}", error_description="{description}"'
    return value + (f', scope="{scope}"' if scope else "")


class IdentityPhase:
    """Sets ``ctx.principal`` or refuses; also the Component that keeps keys fresh."""

    name = "identity"

    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        ids = settings.identity
        self.authenticator = Authenticator(ids, transport=transport, clock=clock, monotonic=monotonic)
        self._default_kinds = tuple(CredentialKind(c) for c in ids.default_credentials)
        self._refusals: dict[str, Counter] = {}
        self._authenticated = {k: AUTHENTICATED.labels(k.value) for k in CredentialKind}

    async def __call__(self, ctx: RequestContext) -> Decision | None:
        route = ctx.route
        if _anonymous(route):
            ctx.principal = ANONYMOUS
            return None
        kinds = (route.credentials if route is not None else ()) or self._default_kinds
        try:
            principal = await self.authenticator.authenticate(ctx.request, kinds)
        except AuthError as err:
            return self._refuse_or_anonymous(ctx, err)
        return self._accept(ctx, principal)

    def admit(self, ctx: RequestContext, principal: Principal) -> Decision | None:
        """The route's rules for a caller a transport already authenticated (no second authentication).

        Same answers as :meth:`__call__` would give for that caller's credentials: an anonymous route
        makes the caller anonymous; an anonymous caller, or one whose credential kind the route does
        not accept, has no credentials for it; the route's scopes are checked.
        """
        route = ctx.route
        if _anonymous(route):
            ctx.principal = ANONYMOUS
            return None
        kinds = (route.credentials if route is not None else ()) or self._default_kinds
        if principal.kind is CredentialKind.ANONYMOUS or principal.kind not in kinds:
            return self._refuse_or_anonymous(ctx, invalid_request(Reason.MISSING_CREDENTIALS, "missing credentials"))
        return self._accept(ctx, principal, count=False)

    def _refuse_or_anonymous(self, ctx: RequestContext, err: AuthError) -> Decision | None:
        route = ctx.route
        if route is not None and route.optional_identity and err.reason == Reason.MISSING_CREDENTIALS:
            ctx.principal = ANONYMOUS
            return None
        return self._refuse(err)

    def _accept(self, ctx: RequestContext, principal: Principal, *, count: bool = True) -> Decision | None:
        route = ctx.route
        if route is not None and route.required_scopes:
            refusal = self._check_scopes(principal, route.required_scopes)
            if refusal is not None:
                return refusal
        ctx.principal = principal
        if count:  # the counter counts authentications, not admissions of a known caller
            self._authenticated[principal.kind].inc()
        return None

    def _count(self, reason: str) -> None:
        counter = self._refusals.get(reason)
        if counter is None:
            counter = self._refusals[reason] = REFUSALS.labels(reason)
        counter.inc()

    def _refuse(self, err: AuthError) -> Decision:
        self._count(err.reason)
        if err.status == 503:
            return Decision.deny(503, Outcome.ERROR, err.reason, "identity provider unavailable",
                                 {"retry-after": "5"})
        return Decision.deny(401, Outcome.UNAUTHENTICATED, err.reason, err.description,
                             {"www-authenticate": _challenge(err.error, err.description)})

    def _check_scopes(self, principal: Principal, required: tuple[str, ...]) -> Decision | None:
        if principal.scopes.issuperset(required):
            return None
        self._count(Reason.INSUFFICIENT_SCOPE)
        scope = " ".join(required)
        challenge = _challenge("insufficient_scope", "insufficient scope", scope)
        return Decision.deny(403, Outcome.POLICY_DENIED, Reason.INSUFFICIENT_SCOPE, f"requires scope {scope}",
                             {"www-authenticate": challenge})

    # -- Component: LinkApp.start() starts phases that have a lifecycle -------
    async def start(self) -> None:
        await self.authenticator.start()

    async def stop(self) -> None:
        await self.authenticator.stop()

    def readiness(self) -> tuple[bool, str]:
        return self.authenticator.readiness()


def _anonymous(route: RouteMatch | None) -> bool:
    return route is not None and (route.anonymous or CredentialKind.ANONYMOUS in route.credentials)


def build_identity_phase(settings: Settings) -> IdentityPhase:
    """The identity phase the settings describe."""
    return IdentityPhase(settings)
