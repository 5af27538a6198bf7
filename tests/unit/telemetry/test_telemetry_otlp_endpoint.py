"""One OTLP endpoint form for Link and Envoy, and an exporter whose failures show.

Against the real OTLP receiver of tests/harness/otlp.py (a plain-text gRPC server) and against
a port where nothing listens: a bare ``HOST:PORT`` must mean plain gRPC (spans arrive), and a
failing export must show in ``/health/ready``'s detail and in the metrics, not only in a log.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest

from link.app import LinkApp
from link.envoyconf import EnvoyOptions, build_bootstrap
from link.envoyconf.bootstrap import OTEL_CLUSTER
from link.metrics import REGISTRY
from link.model import Request
from link.settings import ConfigError
from link.telemetry import TracingComponent
from link.telemetry.endpoint import OtlpEndpoint, parse_otlp_endpoint
from tests.harness.otlp import OtlpReceiver
from tests.harness.procs import free_port
from tests.unit.telemetry.support import settings


@pytest.mark.parametrize(("value", "expected"), [
    ("127.0.0.1:4317", OtlpEndpoint("127.0.0.1", 4317, tls=False)),
    ("http://127.0.0.1:4318", OtlpEndpoint("127.0.0.1", 4318, tls=False)),
    ("HTTP://collector:4317", OtlpEndpoint("collector", 4317, tls=False)),
    ("collector", OtlpEndpoint("collector", 4317, tls=False)),
    ("http://collector", OtlpEndpoint("collector", 4317, tls=False)),
    ("https://otel.example.com:443", OtlpEndpoint("otel.example.com", 443, tls=True)),
    ("https://otel.example.com", OtlpEndpoint("otel.example.com", 4317, tls=True)),
    ("[::1]:4317", OtlpEndpoint("::1", 4317, tls=False)),
    ("http://collector:4317/", OtlpEndpoint("collector", 4317, tls=False)),
])
def test_accepted_forms(value: str, expected: OtlpEndpoint) -> None:
    assert parse_otlp_endpoint(value) == expected


@pytest.mark.parametrize("value", [
    "grpc://collector:4317", "unix:/run/otel.sock", "http://collector:4318/v1/traces", "http://:4317",
    "collector:notaport", "http://user:pw@collector:4317", "https://collector:4317?x=1", "",
])
def test_refused_forms_name_the_accepted_ones(value: str) -> None:
    with pytest.raises(ValueError, match="http://HOST:PORT"):
        parse_otlp_endpoint(value)
    with pytest.raises(ConfigError) as err:
        settings(**{"tracing.enabled": True, "tracing.otlp_endpoint": value or "http://"})
    assert err.value.key == "tracing.otlp_endpoint"


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _decide_and_flush(endpoint: str, n: int = 5) -> tuple[bool, str]:
    app = LinkApp(settings(**{"tracing.enabled": True, "tracing.otlp_endpoint": endpoint,
                              "tracing.export_timeout_s": 1}), plugins=("link.telemetry",))
    await app.start()
    try:
        for i in range(n):
            await app.pipeline.run(Request(method="GET", path=f"/public/{i}", headers={}, request_id=f"r{i}"))
        provider: Any = app.extras["tracer_provider"]
        await asyncio.to_thread(provider.force_flush, 10_000)
        [component] = [c for c in app.components if isinstance(c, TracingComponent)]
        return component.readiness()
    finally:
        await app.stop()


@pytest.mark.parametrize("form", ["{address}", "http://{address}"])
async def test_plain_host_port_and_http_reach_a_plaintext_collector(form: str) -> None:
    with OtlpReceiver() as receiver:
        ok_before = _sample("stoa_link_tracing_spans_exported_total", result="ok")
        ready, detail = await _decide_and_flush(form.format(address=receiver.address))
        assert await asyncio.to_thread(receiver.wait_for, lambda spans: len(spans) >= 5, 10.0)
    assert ready
    assert "(plain gRPC): ok, 5 span(s) exported" in detail, detail
    assert _sample("stoa_link_tracing_spans_exported_total", result="ok") - ok_before == 5
    assert _sample("stoa_link_tracing_exporter_up") == 1.0


@pytest.mark.parametrize("case", ["nothing-listens", "tls-to-a-plaintext-collector"])
async def test_a_failing_exporter_shows_in_readiness_and_metrics(case: str) -> None:
    with OtlpReceiver() as receiver:
        endpoint = (f"127.0.0.1:{free_port()}" if case == "nothing-listens"
                    else f"https://{receiver.address}")
        failed_before = _sample("stoa_link_tracing_spans_exported_total", result="failed")
        ready, detail = await _decide_and_flush(endpoint, n=3)
        assert receiver.spans == []
    # Traces are diagnostics: still ready (a collector outage must not stop traffic), but it says so.
    assert ready
    assert "FAILING" in detail and "3 span(s) not accepted" in detail, detail
    assert _sample("stoa_link_tracing_spans_exported_total", result="failed") - failed_before == 3
    assert _sample("stoa_link_tracing_exporter_up") == 0.0


def _otel_cluster(endpoint: str) -> dict[str, Any]:
    boot = build_bootstrap(EnvoyOptions(otlp_endpoint=endpoint))
    [cluster] = [c for c in boot["staticResources"]["clusters"] if c["name"] == OTEL_CLUSTER]
    return cluster


@pytest.mark.parametrize(("endpoint", "host", "port", "tls"), [
    ("127.0.0.1:4317", "127.0.0.1", 4317, False),
    ("http://127.0.0.1:4317", "127.0.0.1", 4317, False),
    ("collector", "collector", 4317, False),
    ("https://otel.example.com:443", "otel.example.com", 443, True),
])
def test_envoy_takes_the_same_form(endpoint: str, host: str, port: int, tls: bool) -> None:
    cluster = _otel_cluster(endpoint)
    address = cluster["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"]["address"]["socketAddress"]
    assert (address["address"], address["portValue"]) == (host, port)
    assert ("transportSocket" in cluster) is tls
    if tls:
        assert cluster["transportSocket"]["typedConfig"]["sni"] == host


def test_envoy_config_refuses_another_form_on_one_line() -> None:
    result = subprocess.run([sys.executable, "-m", "link.cli", "envoy-config", "--otlp-endpoint", "grpc://c:4317"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("stoa-link: configuration error: --otlp-endpoint: unsupported scheme 'grpc'")
