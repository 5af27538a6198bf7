"""Settings: precedence, platform variables, and every invalid path exits 2 naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from link.cli import main as cli_main
from link.settings import ConfigError, load_settings
from link.settings_doc import render


def test_defaults() -> None:
    s = load_settings(env={})
    assert (s.mode, s.primary_gateway, s.mcp.port, s.identity.keycloak_realm) == ("sidecar", "kong", 3001, "stoa")
    assert s.policy.enabled and s.metering.enabled
    assert s.server.grpc_address == "127.0.0.1:9191" and s.server.admin_address == "127.0.0.1:8081"


def test_platform_environment_variables() -> None:
    s = load_settings(env={"GATEWAY_MODE": "edge-mcp", "GATEWAY_PORT": "4000", "KEYCLOAK_URL": "http://kc:8080",
                           "KEYCLOAK_REALM": "acme", "OPA_ENABLED": "false", "METERING_ENABLED": "0",
                           "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092"})
    assert s.mode == "edge-mcp" and s.mcp.port == 4000
    assert s.identity.keycloak_url == "http://kc:8080" and s.identity.keycloak_realm == "acme"
    assert not s.policy.enabled and not s.metering.enabled
    assert s.metering.bootstrap_servers == "k1:9092,k2:9092"


def test_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "link.yaml"
    cfg.write_text("metering:\n  topic: from-file\n  batch_max: 7\nidentity:\n  audiences: [a, b]\n")
    s = load_settings(str(cfg), env={})
    assert (s.metering.topic, s.metering.batch_max, s.identity.audiences) == ("from-file", 7, ["a", "b"])
    s = load_settings(str(cfg), env={"STOA_METERING_TOPIC": "from-env"})
    assert (s.metering.topic, s.metering.batch_max) == ("from-env", 7)
    s = load_settings(str(cfg), env={"STOA_METERING_TOPIC": "from-env"}, overrides={"metering.topic": "from-flag"})
    assert s.metering.topic == "from-flag"
    s = load_settings(env={"STOA_IDENTITY_AUDIENCES": "x, y"})
    assert s.identity.audiences == ["x", "y"]


@pytest.mark.parametrize(("env", "overrides", "yaml_text", "key"), [
    ({"GATEWAY_MODE": "turbo"}, {}, None, "mode"),
    ({"GATEWAY_MODE": "proxy"}, {}, None, "proxy.upstream"),
    ({"GATEWAY_PORT": "seventy"}, {}, None, "mcp.port"),
    ({"GATEWAY_PORT": "70000"}, {}, None, "mcp.port"),
    ({"OPA_ENABLED": "perhaps"}, {}, None, "policy.enabled"),
    ({}, {"ratelimit.backend": "redis"}, None, "ratelimit.redis_url"),
    ({}, {"ratelimit.tenant_default": "ten/min"}, None, "ratelimit.tenant_default"),
    ({}, {"snapshots.retention_days": "45"}, None, "snapshots.retention_days"),
    ({}, {"server.grpc_address": "nowhere"}, None, "server.grpc_address"),
    ({}, {"identity.algorithms": "HS256"}, None, "identity.algorithms"),
    ({}, {"metering.security_protocol": "SASL_SSL"}, None, "metering.sasl_mechanism"),
    ({}, {"policy.engine": "remote"}, None, "policy.remote_url"),
    ({}, {}, "bogus: 1\n", "bogus"),
    ({}, {}, "metering:\n  topik: x\n", "metering.topik"),
    ({}, {}, "routes:\n  - {name: a, prefix: /a}\n  - {name: a, prefix: /b}\n", "routes"),
    ({}, {}, "routes:\n  - {name: a}\n", "routes.0"),
    ({}, {}, "- just\n- a list\n", "--config"),
    ({}, {}, "metering: [\n", "--config"),
])
def test_invalid_settings_name_the_key(tmp_path: Path, env: dict[str, str], overrides: dict[str, str],
                                       yaml_text: str | None, key: str) -> None:
    cfg = None
    if yaml_text is not None:
        cfg = tmp_path / "bad.yaml"
        cfg.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_settings(str(cfg) if cfg else None, env=env, overrides=overrides)
    assert err.value.key == key, str(err.value)
    assert err.value.reason


def test_unknown_flag_key() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env={}, overrides={"metering.nope": "1"})
    assert err.value.key == "metering.nope"


@pytest.mark.parametrize(("argv", "needle"), [
    (["serve", "--mode=proxy"], "proxy.upstream"),
    (["serve", "--metering-enabled=maybe"], "metering.enabled"),
    (["serve", "--set", "ratelimit.backend=redis"], "ratelimit.redis_url"),
    (["serve", "--set", "nope.key=1"], "nope.key"),
    (["serve", "--config", "/nonexistent/link.yaml"], "--config"),
    (["mcp", "--port", "abc"], "mcp.port"),
])
def test_cli_exits_2_naming_the_key(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert f"configuration error: {needle}" in err


def test_configuration_reference_is_current() -> None:
    path = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert path.read_text() == render(), "docs/configuration.md is stale: python -m link.settings_doc > docs/configuration.md"
