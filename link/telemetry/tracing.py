"""The OpenTelemetry tracer provider: batched OTLP/gRPC export, parent-based ratio sampling.

Standard ``OTEL_*`` variables are honoured where Link's settings do not say
otherwise: ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``/``HEADERS``/``CERTIFICATE``/
``TIMEOUT``/``INSECURE``, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER[_ARG]``, ``OTEL_BSP_*`` and ``OTEL_SDK_DISABLED``.
The provider is Link's own (not the process-global one), so several Link apps
can live in one process, as they do in tests.
"""

from __future__ import annotations

import asyncio
import logging
import os

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased

from link.settings import ConfigError, TracingSettings
from link.telemetry.endpoint import OtlpEndpoint, parse_otlp_endpoint
from link.telemetry.export import ObservedExporter

__all__ = ["TracingComponent", "build_tracer_provider", "observed_otlp_exporter", "otlp_endpoint_of"]

_log = logging.getLogger("stoa.link.telemetry")


def _sampler(settings: TracingSettings) -> Sampler | None:
    """Ours when set explicitly; else OTEL_TRACES_SAMPLER if present (None lets the SDK read it)."""
    if "sample_ratio" not in settings.model_fields_set and os.environ.get("OTEL_TRACES_SAMPLER"):
        return None
    # Parent-based: a request the caller (or Envoy) sampled stays sampled, and vice versa.
    return ParentBased(TraceIdRatioBased(settings.sample_ratio))


def _resource(settings: TracingSettings) -> Resource:
    attributes: dict[str, str] = {}
    if "service_name" in settings.model_fields_set or not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = settings.service_name
    try:
        from importlib.metadata import version

        attributes["service.version"] = version("stoa-link")
    except Exception:  # not installed as a distribution (a source checkout)
        pass
    return Resource.create(attributes)


def otlp_endpoint_of(settings: TracingSettings) -> OtlpEndpoint | None:
    """``tracing.otlp_endpoint``, else the standard OTEL_* variables, in the one accepted form."""
    raw = (settings.otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
           or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "")
    if not raw:
        return None
    try:
        return parse_otlp_endpoint(raw)
    except ValueError as exc:
        raise ConfigError("tracing.otlp_endpoint", str(exc)) from None


def _otlp_exporter(settings: TracingSettings) -> SpanExporter:
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        # Seen when another wheel (xds-protos) overwrote opentelemetry-proto's generated modules.
        raise ConfigError(
            "tracing.enabled",
            f"the OTLP exporter cannot be loaded ({exc}); reinstall 'opentelemetry-proto' "
            "after 'xds-protos' (they ship the same module paths)",
        ) from None
    endpoint = otlp_endpoint_of(settings)
    if endpoint is None:
        return OTLPSpanExporter(timeout=settings.export_timeout_s)
    # The scheme decides, never the SDK's default (which reads a bare HOST:PORT as TLS).
    return OTLPSpanExporter(endpoint=endpoint.url, insecure=not endpoint.tls, timeout=settings.export_timeout_s)


def build_tracer_provider(settings: TracingSettings, exporter: SpanExporter | None = None) -> TracerProvider:
    """A provider exporting in batches from its own thread (``exporter`` replaces OTLP in tests)."""
    provider = TracerProvider(resource=_resource(settings), sampler=_sampler(settings))
    provider.add_span_processor(BatchSpanProcessor(exporter or ObservedExporter(_otlp_exporter(settings))))
    return provider


def observed_otlp_exporter(settings: TracingSettings) -> ObservedExporter:
    """The OTLP exporter, wrapped so its failures show in metrics and readiness."""
    return ObservedExporter(_otlp_exporter(settings))


class TracingComponent:
    """Owns the provider's life: flushes and shuts the exporter down when Link stops."""

    name = "tracing"

    def __init__(self, provider: TracerProvider, endpoint: str, shutdown_timeout_s: float = 5.0,
                 exporter: ObservedExporter | None = None) -> None:
        self.provider = provider
        self._exporter = exporter
        self._endpoint = endpoint
        self._timeout = shutdown_timeout_s
        self._stopped = False

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        # shutdown() flushes and blocks on the exporter; keep it off the loop, and bounded.
        try:
            await asyncio.wait_for(asyncio.to_thread(self.provider.shutdown), timeout=self._timeout + 1)
        except TimeoutError:
            _log.warning("tracing: spans not exported within %.0fs of shutdown were dropped", self._timeout)

    def readiness(self) -> tuple[bool, str]:
        # Traces are diagnostics: a missing collector never makes Link unready, but the detail says so.
        state = self._exporter.describe() if self._exporter is not None else "exporting"
        return True, f"spans to {self._endpoint}: {state}"
