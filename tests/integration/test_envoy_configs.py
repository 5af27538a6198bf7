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
