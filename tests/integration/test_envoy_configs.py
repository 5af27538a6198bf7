"""Generated Envoy bootstraps: current on disk, and accepted by the real Envoy (`--mode validate`)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

from link.cli import main as cli_main
from link.envoyconf.files import ROOT, expected_files
from tests.harness.envoy import envoy_binary

pytestmark = pytest.mark.integration


def test_committed_configs_are_current() -> None:
    for name, text in expected_files().items():
        assert (ROOT / name).read_text() == text, f"envoy/{name} is stale: run `make envoy-configs`"


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path), "--use-dynamic-base-id",
                           "--log-level", "error"], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", sorted(expected_files()))
def test_envoy_accepts_committed_config(name: str) -> None:
    result = _validate(ROOT / name)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("args", [
    ["--primary-gateway", "webmethods", "--failure-mode", "open"],
    ["--primary-gateway", "kong", "--upstream", "https://kong.internal:8443", "--link", "unix:/tmp/link.sock"],
    ["--primary-gateway", "gravitee", "--ext-proc-prefix", "/orders", "--ext-proc-prefix", "/pay",
     "--otlp-endpoint", "127.0.0.1:4317", "--link", "127.0.0.1:9191,127.0.0.1:9192"],
    ["--primary-gateway", "kong", "--authz-transport", "grpc", "--failure-mode", "open"],
    ["--primary-gateway", "kong", "--link-http", "unix:/tmp/authz.sock", "--otlp-endpoint", "127.0.0.1:4317"],
])
def test_envoy_accepts_generated_variants(args: list[str]) -> None:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "envoy.yaml"
        assert cli_main(["envoy-config", *args, "-o", str(out)]) == 0
        result = _validate(out)
        assert result.returncode == 0, result.stdout + result.stderr


def test_envoy_config_rejects_bad_upstream(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["envoy-config", "--upstream", "ftp://x"]) == 2
    assert "--upstream" in capsys.readouterr().err


def test_envoy_config_from_link_settings(tmp_path: Path) -> None:
    """Routes are declared once: contract routes send their body in the check (no ext_proc stream);
    snapshot routes are tapped (snapshots.capture: tap, the default), so they need no stream either."""
    import yaml

    cfg = tmp_path / "link.yaml"
    cfg.write_text(yaml.safe_dump({
        "server": {"grpc_address": "127.0.0.1:9300", "workers": 2},
        "routes": [
            {"name": "public", "prefix": "/public", "anonymous": True},
            {"name": "orders", "template": "/orders/{id}/items", "contract": "orders-api"},
            {"name": "pay", "prefix": "/pay", "snapshots": True},
        ],
        "tracing": {"enabled": True, "otlp_endpoint": "http://collector:4317", "sample_ratio": 0.25},
    }))
    out = tmp_path / "envoy.yaml"
    assert cli_main(["envoy-config", "--config", str(cfg), "-o", str(out)]) == 0
    text = out.read_text()
    boot = yaml.safe_load(text)
    routes = boot["staticResources"]["listeners"][0]["filterChains"][0]["filters"][0]["typedConfig"][
        "routeConfig"]["virtualHosts"][0]["routes"]
    assert [r["match"]["prefix"] for r in routes] == ["/orders/", "/"]
    orders = routes[0]["typedPerFilterConfig"]
    body = orders["envoy.filters.http.ext_authz"]["checkSettings"]["withRequestBody"]
    assert body["maxRequestBytes"] == 1_048_576 and not body.get("allowPartialMessage")  # contracts.max_body_bytes
    assert orders["envoy.filters.http.ext_proc"]["disabled"] is True  # one hop: no ext_proc stream
    filters = [f["name"] for f in boot["staticResources"]["listeners"][0]["filterChains"][0]["filters"][0][
        "typedConfig"]["httpFilters"]]
    assert filters[-2:] == ["envoy.filters.http.tap", "envoy.filters.http.router"]
    link = next(c for c in boot["staticResources"]["clusters"] if c["name"] == "stoa_link")
    ports = [e["endpoint"]["address"]["socketAddress"]["portValue"]
             for e in link["loadAssignment"]["endpoints"][0]["lbEndpoints"]]
    assert ports == [9300, 9301]  # one endpoint per worker
    assert "otel_collector" in text and "randomSampling" in text
    assert _validate(out).returncode == 0

    # With snapshots.capture: ext_proc the snapshot route streams through ext_proc instead, and no tap.
    data = yaml.safe_load(cfg.read_text())
    data["snapshots"] = {"capture": "ext_proc"}
    cfg.write_text(yaml.safe_dump(data))
    assert cli_main(["envoy-config", "--config", str(cfg), "-o", str(out)]) == 0
    boot = yaml.safe_load(out.read_text())
    hcm = boot["staticResources"]["listeners"][0]["filterChains"][0]["filters"][0]["typedConfig"]
    assert [r["match"]["prefix"] for r in hcm["routeConfig"]["virtualHosts"][0]["routes"]] == ["/orders/", "/pay",
                                                                                              "/"]
    assert "envoy.filters.http.tap" not in [f["name"] for f in hcm["httpFilters"]]
    assert _validate(out).returncode == 0
