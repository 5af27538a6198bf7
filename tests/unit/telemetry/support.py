"""Helpers for the telemetry tests: an app whose decision spans go to memory."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from link.app import LinkApp
from link.model import Request
from link.settings import Settings, load_settings
from link.telemetry import DecisionTracer

ROUTES = [
    {"name": "public", "template": "/public/{item}", "anonymous": True, "tenant": "demo"},
    {"name": "private", "prefix": "/private"},
]


def settings(**over: Any) -> Settings:
    base: dict[str, Any] = {"registry.source": "none", "metering.enabled": False, "snapshots.enabled": False,
                            "policy.enabled": False, "routes": ROUTES}
    return load_settings(env={}, overrides={**base, **over})


class TracedApp:
    """A LinkApp (pipeline only) with a DecisionTracer exporting to memory."""

    def __init__(self, ratio: float = 1.0) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(ratio)))
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.app = LinkApp(settings(), plugins=())
        self.app.pipeline.add_observer(DecisionTracer(self.provider.get_tracer("test")))

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


def request(path: str, headers: dict[str, str] | None = None, **kw: Any) -> Request:
    return Request(method="GET", path=path, headers={"user-agent": "pytest", **(headers or {})},
                   host="api.local", source_address="10.0.0.7", **kw)
