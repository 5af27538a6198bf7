"""install(app) with tracing on: provider settings, OTEL_* variables, shutdown."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased

from link.app import LinkApp
from link.events import OutcomeSink
from link.telemetry import DecisionTracer, RequestMetrics, TracingComponent
from link.telemetry.tracing import build_tracer_provider
from tests.unit.telemetry.support import settings

ENDPOINT = "http://127.0.0.1:1"  # nothing listens: export failures must stay off the app's path


def _sinks(app: LinkApp) -> list[OutcomeSink]:
    return list(app.bus._sinks)


def test_tracing_off_installs_metrics_only() -> None:
    app = LinkApp(settings(), plugins=("link.telemetry",))
    assert any(isinstance(s, RequestMetrics) for s in _sinks(app))
    assert not any(isinstance(o, DecisionTracer) for o in app.pipeline._observers)
    assert "tracer_provider" not in app.extras
    assert not any(isinstance(c, TracingComponent) for c in app.components)


async def test_tracing_on_installs_provider_observer_and_component() -> None:
    app = LinkApp(settings(**{"tracing.enabled": True, "tracing.otlp_endpoint": ENDPOINT,
                              "tracing.sample_ratio": "0.25", "tracing.service_name": "link-test"}),
                  plugins=("link.telemetry",))
    provider = app.extras["tracer_provider"]
    assert isinstance(provider, TracerProvider)
    assert provider.resource.attributes["service.name"] == "link-test"
    assert isinstance(provider.sampler, ParentBased)
    assert "0.25" in provider.sampler.get_description()
    assert any(isinstance(o, DecisionTracer) for o in app.pipeline._observers)
    [component] = [c for c in app.components if isinstance(c, TracingComponent)]
    assert component.readiness() == (True, f"spans to {ENDPOINT} (plain gRPC): no span exported yet")
    await app.start()
    await app.stop()  # flushes and shuts the exporter down, bounded, without a collector


def test_otel_environment_is_honoured_when_settings_are_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test,team=gw")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ENDPOINT)
    s = settings(**{"tracing.enabled": True})  # no otlp_endpoint: the env variable satisfies validation
    provider = build_tracer_provider(s.tracing)
    try:
        assert provider.resource.attributes["service.name"] == "from-env"
        assert provider.resource.attributes["team"] == "gw"
        assert provider.sampler.get_description() == "AlwaysOffSampler"
    finally:
        provider.shutdown()
    # Explicit settings win over the environment.
    s = settings(**{"tracing.enabled": True, "tracing.service_name": "explicit", "tracing.sample_ratio": "1"})
    provider = build_tracer_provider(s.tracing)
    try:
        assert provider.resource.attributes["service.name"] == "explicit"
        assert isinstance(provider.sampler, ParentBased)
    finally:
        provider.shutdown()
