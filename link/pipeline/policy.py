"""Policy phase: OPA/Rego policy. Placeholder: lets every request through."""

from __future__ import annotations

from link.model import Decision, RequestContext
from link.settings import Settings


class PolicyPhase:
    name = "policy"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def __call__(self, ctx: RequestContext) -> Decision | None:
        return None


def build_policy_phase(settings: Settings) -> PolicyPhase:
    return PolicyPhase(settings)
