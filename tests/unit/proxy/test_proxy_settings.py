"""Proxy mode's settings: what the seed's flags mean, and configurations refused at start-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from link.envoyconf.proxy import build_proxy_bootstrap, sds_files
from link.proxy.effective import effective_settings, opa_data_url
from link.settings import ConfigError, load_settings


def test_seed_flags_mean_remote_opa_and_an_optional_identity_catch_all() -> None:
    s = effective_settings(load_settings(env={}, overrides={
        "mode": "proxy", "proxy.upstream": "http://backend:8080", "proxy.opa_endpoint": "http://opa:8181"}))
    assert s.policy.engine == "remote" and s.policy.enabled
    assert s.policy.remote_url == "http://opa:8181/v1/data/envoy/authz/allow"
    assert [(r.name, r.prefix, r.optional_identity, r.anonymous) for r in s.routes] == [("default", "/", True, False)]


def test_opa_data_url_follows_the_decision_path() -> None:
    assert opa_data_url("http://opa:8181/", "data.httpapi.authz.decision") == "http://opa:8181/v1/data/httpapi/authz/decision"


@pytest.mark.parametrize(("overrides", "key"), [
    ({"mode": "proxy"}, "proxy.upstream"),
    ({"mode": "proxy", "proxy.upstream": "ftp://x"}, "proxy.upstream"),
    ({"mode": "proxy", "proxy.upstream": "http://x:99999"}, "proxy.upstream"),
    ({"mode": "proxy", "proxy.upstream": "http://x", "proxy.tls_cert_file": "/c"}, "proxy.tls_cert_file"),
    ({"mode": "proxy", "proxy.upstream": "http://x", "proxy.tls_client_ca_file": "/ca"}, "proxy.tls_client_ca_file"),
])
def test_bad_proxy_settings_name_the_key(overrides: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env={}, overrides=overrides)
    assert err.value.key == key, err.value


def test_transforms_outside_proxy_mode_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "link.yaml"
    path.write_text(yaml.safe_dump({"routes": [{"name": "a", "prefix": "/a", "upstream": "http://x"}]}))
    with pytest.raises(ConfigError) as err:
        load_settings(str(path), env={})
    assert err.value.key == "routes" and "proxy mode" in err.value.reason


def test_bootstrap_has_one_cluster_per_upstream_with_circuit_breaking() -> None:
    path = Path(__file__).parent / "routes.yaml"
    s = effective_settings(load_settings(str(path), env={}))
    boot = build_proxy_bootstrap(s)
    clusters = {c["name"]: c for c in boot["staticResources"]["clusters"]}
    assert set(clusters) >= {"primary_gateway", "upstream_1"}
    assert clusters["upstream_1"]["outlierDetection"]["consecutive5xx"] == 5
    assert clusters["upstream_1"]["circuitBreakers"]["thresholds"][0]["retryBudget"]["budgetPercent"] == {"value": 20.0}
    routes = boot["staticResources"]["listeners"][0]["filterChains"][0]["filters"][0]["typedConfig"]["routeConfig"][
        "virtualHosts"][0]["routes"]
    assert [r["name"] for r in routes[:2]] == ["route:b", "route:a"]
    assert routes[0]["route"]["cluster"] == "upstream_1"
    assert clusters["primary_gateway"]["commonLbConfig"]["healthyPanicThreshold"] == {"value": 0}
    assert sds_files(s.proxy) == {}


def test_envoy_config_mode_proxy_validates_with_envoy(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "link.cli", "envoy-config", "--mode", "proxy",
                          "--upstream", "http://backend:8080"], check=True, capture_output=True, text=True).stdout
    path = tmp_path / "envoy.yaml"
    path.write_text(out)
    envoy = Path(sys.executable).parent / "envoy"
    check = subprocess.run([str(envoy), "--mode", "validate", "-c", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr[-2000:]
