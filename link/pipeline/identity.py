"""Identity phase: who is calling.

Placeholder until the identity issue lands: anonymous routes pass, every other
request is refused with 401 (secure by default).
"""

from __future__ import annotations

from link.model import ANONYMOUS, Decision, Outcome, RequestContext
from link.settings import Settings


class IdentityPhase:
    name = "identity"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def __call__(self, ctx: RequestContext) -> Decision | None:
        route = ctx.route
        if route is not None and route.anonymous:
            ctx.principal = ANONYMOUS
            return None
        return Decision.deny(
            401, Outcome.UNAUTHENTICATED, "invalid_request", "credentials required",
            {"www-authenticate": 'Bearer error="invalid_request"'},
        )


def build_identity_phase(settings: Settings) -> IdentityPhase:
    return IdentityPhase(settings)
