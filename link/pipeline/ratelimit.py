"""RateLimit phase: rate limits per tenant, consumer and route. Placeholder: lets every request through."""

from __future__ import annotations

from link.model import Decision, RequestContext
from link.settings import Settings


class RateLimitPhase:
    name = "ratelimit"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def __call__(self, ctx: RequestContext) -> Decision | None:
        return None


def build_ratelimit_phase(settings: Settings) -> RateLimitPhase:
    return RateLimitPhase(settings)
