"""Contract phase: UAC contract validation. Placeholder: lets every request through."""

from __future__ import annotations

from link.model import Decision, RequestContext
from link.settings import Settings


class ContractPhase:
    name = "contract"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def __call__(self, ctx: RequestContext) -> Decision | None:
        return None


def build_contract_phase(settings: Settings) -> ContractPhase:
    return ContractPhase(settings)
