"""The decision pipeline: identity -> policy -> rate limit -> contract -> response."""

from link.pipeline.base import Phase, Pipeline, PipelineResult, ReadinessAware
from link.settings import Settings

__all__ = ["Phase", "Pipeline", "PipelineResult", "ReadinessAware", "build_pipeline"]


def build_pipeline(settings: Settings) -> Pipeline:
    """Assemble the pipeline the settings describe."""
    from link.pipeline.contract import build_contract_phase
    from link.pipeline.identity import build_identity_phase
    from link.pipeline.policy import build_policy_phase
    from link.pipeline.ratelimit import build_ratelimit_phase
    from link.pipeline.response import ResponsePhase
    from link.routes import RouteTable

    phases: list[Phase] = [build_identity_phase(settings)]
    if settings.policy.enabled:
        phases.append(build_policy_phase(settings))
    if settings.ratelimit.enabled:
        phases.append(build_ratelimit_phase(settings))
    if settings.contracts.enabled:
        phases.append(build_contract_phase(settings))
    return Pipeline(RouteTable(settings.routes), phases, ResponsePhase(settings.identity))
