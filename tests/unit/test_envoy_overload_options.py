"""The overload manager's options: defaults, flags of `envoy-config`, Link's envoy.* settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from link.cli import main as cli_main
from link.envoyconf import EnvoyOptions, build_bootstrap
from link.envoyconf.from_settings import envoy_options
from link.settings import load_settings

_CONN = "envoy.resource_monitors.global_downstream_max_connections"
_HEAP = "envoy.resource_monitors.fixed_heap"


def _monitors(bootstrap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    manager = bootstrap.get("overloadManager") or {}
    return {m["name"]: m["typedConfig"] for m in manager.get("resourceMonitors", [])}


def test_defaults_are_sized_for_a_sidecar() -> None:
    monitors = _monitors(build_bootstrap(EnvoyOptions()))
    assert monitors[_CONN]["maxActiveDownstreamConnections"] == "4096"
    assert int(monitors[_HEAP]["maxHeapSizeBytes"]) == 192 << 20  # under the 256Mi container limit


@pytest.mark.parametrize(("flags", "conn", "heap"), [
    ([], "4096", str(192 << 20)),
    (["--max-downstream-connections", "100"], "100", str(192 << 20)),
    (["--max-heap-bytes", "0"], "4096", None),
    (["--max-downstream-connections", "0", "--max-heap-bytes", "0"], None, None),
])
def test_envoy_config_flags(tmp_path: Path, flags: list[str], conn: str | None, heap: str | None) -> None:
    out = tmp_path / "envoy.yaml"
    assert cli_main(["envoy-config", *flags, "-o", str(out)]) == 0
    monitors = _monitors(yaml.safe_load(out.read_text()))
    assert monitors.get(_CONN, {}).get("maxActiveDownstreamConnections") == conn
    assert monitors.get(_HEAP, {}).get("maxHeapSizeBytes") == heap


@pytest.mark.parametrize("flag", ["--max-downstream-connections", "--max-heap-bytes"])
def test_negative_values_are_a_configuration_error(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["envoy-config", flag, "-1"]) == 2
    assert flag in capsys.readouterr().err


def test_link_settings_carry_the_limits() -> None:
    settings = load_settings(env={"STOA_ENVOY_MAX_DOWNSTREAM_CONNECTIONS": "512", "STOA_ENVOY_MAX_HEAP_BYTES": "0"})
    monitors = _monitors(build_bootstrap(envoy_options(settings)))
    assert monitors == {_CONN: monitors[_CONN]} and monitors[_CONN]["maxActiveDownstreamConnections"] == "512"


@pytest.mark.parametrize(("flags", "conn", "heap"), [
    ([], "4096", str(192 << 20)),
    (["--max-downstream-connections", "100", "--max-heap-bytes", "0"], "100", None),
])
def test_the_shadow_bootstrap_has_the_same_limits(tmp_path: Path, flags: list[str], conn: str | None,
                                                  heap: str | None) -> None:
    out = tmp_path / "envoy.yaml"
    assert cli_main(["envoy-config", "--mode", "shadow", "--target", "http://legacy:8080", *flags,
                     "-o", str(out)]) == 0
    monitors = _monitors(yaml.safe_load(out.read_text()))
    assert monitors.get(_CONN, {}).get("maxActiveDownstreamConnections") == conn
    assert monitors.get(_HEAP, {}).get("maxHeapSizeBytes") == heap


def test_shadow_limits_come_from_the_settings_and_refuse_negatives(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from link.shadow.runner import shadow_envoy_options

    settings = load_settings(env={"STOA_MODE": "shadow", "STOA_SHADOW_TARGET": "http://legacy:8080",
                                  "STOA_ENVOY_MAX_DOWNSTREAM_CONNECTIONS": "512"})
    opts = shadow_envoy_options(settings)
    assert (opts.max_downstream_connections, opts.max_heap_bytes) == (512, 192 << 20)
    assert cli_main(["envoy-config", "--mode", "shadow", "--target", "http://legacy:8080",
                     "--max-heap-bytes", "-1"]) == 2
    assert "--max-heap-bytes" in capsys.readouterr().err
