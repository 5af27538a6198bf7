"""Settings sources (pydantic-settings): every variable reaches its key, precedence between layers, refusals."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from link.settings import PLATFORM_ENV, ConfigError, Settings, load_settings
from link.settings_sources import (
    LayeredSettings,
    PlatformEnvSource,
    PrefixedEnvSource,
    field_at,
    prefixed_env_names,
    text_value,
)

ROOT = Path(__file__).resolve().parents[2]
PREFIXED = prefixed_env_names()


def _at(tree: dict[str, Any], key: str) -> Any:
    head, _, tail = key.partition(".")
    return tree[head][tail] if tail else tree[head]


def _keys(tree: dict[str, Any]) -> list[str]:
    """The dotted keys a source's tree sets (sections hold keys, the rest are keys)."""
    keys = []
    for head, value in tree.items():
        keys += [f"{head}.{sub}" for sub in value] if isinstance(value, dict) else [head]
    return keys


@pytest.mark.parametrize(("var", "key"), sorted(PREFIXED.items()))
def test_every_stoa_variable_reaches_its_key(var: str, key: str) -> None:
    # Through pydantic-settings' prefix and nested delimiter, not a table of ours: a change in how the
    # library splits names (STOA_METERING_SPOOL_DIR = metering.spool_dir) fails here, name by name.
    tree = PrefixedEnvSource(LayeredSettings, {var: "v1"})()
    assert _keys(tree) == [key]
    assert _at(tree, key) == text_value(field_at(key), "v1", key)


@pytest.mark.parametrize(("var", "key"), sorted(PLATFORM_ENV.items()))
def test_every_platform_variable_reaches_its_key(var: str, key: str) -> None:
    assert _at(PlatformEnvSource(LayeredSettings, {var: "v1"})(), key) == "v1"
    assert PlatformEnvSource(LayeredSettings, {var: ""})() == {}  # empty = unset


@pytest.mark.parametrize(("env", "key", "expected"), [
    ({"GATEWAY_PORT": "4001", "STOA_MCP_PORT": "4002"}, "mcp.port", 4002),
    ({"GATEWAY_MODE": "edge-mcp", "STOA_MODE": "sidecar"}, "mode", "sidecar"),
    ({"STOA_CONTROL_PLANE_URL": "http://a:1", "STOA_CONTROLPLANE_URL": "http://b:2"}, "controlplane.url",
     "http://b:2"),
    ({"STOA_GATEWAY_KEY": "platform", "STOA_CONTROLPLANE_GATEWAY_KEY": "own"}, "controlplane.gateway_key", "own"),
    ({"METERING_ENABLED": "false", "STOA_METERING_ENABLED": "true"}, "metering.enabled", True),
    ({"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "STOA_METERING_BOOTSTRAP_SERVERS": ""}, "metering.bootstrap_servers",
     None),
    ({"GATEWAY_PORT": "", "STOA_MCP_PORT": "4002"}, "mcp.port", 4002),
    ({"GATEWAY_PORT": ""}, "mcp.port", 3001),
    ({"POD_NAME": "pod-7"}, "controlplane.instance_name", "pod-7"),
])
def test_stoa_names_win_over_the_platform_names(env: dict[str, str], key: str, expected: Any) -> None:
    settings = load_settings(env=env)
    head, _, tail = key.partition(".")
    assert (getattr(getattr(settings, head), tail) if tail else getattr(settings, head)) == expected


FILE = """\
gateway_id: from-file
metering: {topic: from-file, bootstrap_servers: "k:1", batch_max: 7}
identity: {audiences: [a, b]}
ratelimit: {tenants: {acme: 10/s, beta: 20/s}}
"""


@pytest.mark.parametrize(("env", "flags", "expected"), [
    ({}, {}, {"gateway_id": "from-file", "metering.topic": "from-file", "metering.batch_max": 7,
              "identity.audiences": ["a", "b"], "ratelimit.tenants": {"acme": "10/s", "beta": "20/s"}}),
    ({"STOA_METERING_TOPIC": "env"}, {}, {"metering.topic": "env", "metering.batch_max": 7}),
    ({"STOA_METERING_TOPIC": "env"}, {"metering.topic": "flag"}, {"metering.topic": "flag"}),
    # An empty variable clears what the file set (optional keys) or empties a list.
    ({"STOA_GATEWAY_ID": ""}, {}, {"gateway_id": None}),
    ({"STOA_METERING_BOOTSTRAP_SERVERS": ""}, {}, {"metering.bootstrap_servers": None}),
    ({"STOA_IDENTITY_AUDIENCES": ""}, {}, {"identity.audiences": []}),
    ({"STOA_IDENTITY_AUDIENCES": " x, y ,"}, {}, {"identity.audiences": ["x", "y"]}),
    ({}, {"identity.audiences": "z"}, {"identity.audiences": ["z"]}),
    # Mappings merge key by key, each layer over the one below.
    ({"STOA_RATELIMIT_TENANTS": "{beta: 5/s, gamma: 1/s}"}, {},
     {"ratelimit.tenants": {"acme": "10/s", "beta": "5/s", "gamma": "1/s"}}),
    ({"STOA_RATELIMIT_TENANTS": '{"beta": "5/s"}'}, {"ratelimit.tenants": "{acme: 1/min}"},
     {"ratelimit.tenants": {"acme": "1/min", "beta": "5/s"}}),
    ({}, {"policy.enabled": False, "server.workers": 2}, {"policy.enabled": False, "server.workers": 2}),
    # Variables are upper case: other spellings are not settings (and not refused: they are not STOA_*).
    ({"stoa_metering_topic": "lower", "Stoa_Metering_Topic": "mixed"}, {}, {"metering.topic": "from-file"}),
])
def test_flags_over_environment_over_file(tmp_path: Path, env: dict[str, str], flags: dict[str, Any],
                                          expected: dict[str, Any]) -> None:
    config = tmp_path / "link.yaml"
    config.write_text(FILE)
    settings = load_settings(str(config), env=env, overrides=flags)
    for key, value in expected.items():
        head, _, tail = key.partition(".")
        assert (getattr(getattr(settings, head), tail) if tail else getattr(settings, head)) == value, key


@pytest.mark.parametrize(("env", "key", "reason"), [
    ({"STOA_METERING_TOPC": "x"}, "STOA_METERING_TOPC", "did you mean STOA_METERING_TOPIC?"),
    ({"STOA_CONTROL_PLANE_UR": "x"}, "STOA_CONTROL_PLANE_UR", "did you mean STOA_CONTROL_PLANE_URL?"),
    ({"STOA_METERING": "x"}, "STOA_METERING", "did you mean STOA_METERING_TOPIC?"),  # a section, not a key
    ({"STOA_ROUTES_NAME": "x"}, "STOA_ROUTES_NAME", "did you mean STOA_ROUTES?"),  # routes: the file's
    ({"STOA_ZZZZZZZZZZZZZZZZZZZZZZZZ": "x"}, "STOA_ZZZZZZZZZZZZZZZZZZZZZZZZ", "see docs/configuration.md"),
    ({"STOA_": ""}, "STOA_", "unknown environment variable"),
    ({"STOA_RATELIMIT_TENANTS": "[a"}, "ratelimit.tenants", "expected a mapping (YAML/JSON)"),
    ({"STOA_IDENTITY_CONSUMER_TENANTS": "{a"}, "identity.consumer_tenants", "expected a mapping (YAML/JSON)"),
])
def test_refused_variables_are_named(env: dict[str, str], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env=env)
    assert err.value.key == key and reason in err.value.reason, str(err.value)


def _names_in(paths: list[Path]) -> set[str]:
    names: set[str] = set()
    for path in paths:
        names |= set(re.findall(r"\bSTOA_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    return names


SHIPPED = sorted(_names_in([*ROOT.glob("deploy/**/*.yaml"), *ROOT.glob("docs/**/*.md"), ROOT / "README.md",
                            ROOT / "Dockerfile", *ROOT.glob("examples/**/*.yaml")]))


@pytest.mark.parametrize("var", SHIPPED)
def test_every_variable_the_manifests_and_docs_name_is_accepted(var: str) -> None:
    # A manifest or a page naming a variable start-up refuses would stop a pod, or mislead a reader.
    value = {"STOA_CONTROL_PLANE_URL": "http://127.0.0.1:9", "STOA_CONTROLPLANE_URL": "http://127.0.0.1:9"}
    env = {var: value.get(var, "")}
    try:
        load_settings(env=env)
    except ConfigError as exc:
        assert exc.key != var, f"{var} is refused: {exc.reason}"


def test_shipped_names_are_found() -> None:
    assert {"STOA_MCP_ENABLED", "STOA_CONTROLPLANE_GATEWAY_KEY_FILE", "STOA_MCP_TOKEN"} <= set(SHIPPED)


@pytest.mark.parametrize(("key", "raw", "expected"), [
    ("identity.audiences", "a, b,,", ["a", "b"]),
    ("identity.audiences", "", []),
    ("identity.issuers", "x", ["x"]),  # a list of mappings given as text: pydantic refuses it, naming the key
    ("ratelimit.tenants", "{a: 1/s}", {"a": "1/s"}),
    ("ratelimit.tenants", '{"a": "1/s"}', {"a": "1/s"}),
    ("metering.bootstrap_servers", "", None),
    ("metering.sasl_mechanism", "", None),  # Literal | None: optional like the others
    ("mcp.sse_retry_ms", "", None),
    ("metering.topic", "", ""),  # not optional: pydantic decides
    ("mcp.port", "4000", "4000"),
])
def test_text_values_by_the_fields_type(key: str, raw: str, expected: Any) -> None:
    assert text_value(field_at(key), raw, key) == expected


def test_a_plain_settings_validation_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings stays a plain model: tests and `stoa-link validate` see only the data they pass.
    monkeypatch.setenv("STOA_METERING_TOPIC", "from-env")
    monkeypatch.setenv("STOA_TYPO", "x")
    assert Settings.model_validate({}).metering.topic == "stoa.metering"
    assert load_settings(env={}).metering.topic == "stoa.metering"


@pytest.mark.parametrize(("text", "key", "reason"), [
    ("1: x\n", "1", "Keys should be strings (got 1)"),
    ("null: x\n", "None", "Keys should be strings (got None)"),
    ("metering:\n  1: x\n", "metering.1", "Keys should be strings (got 1)"),
    ("- a\n", "--config", "must hold a mapping at the top level"),
    ("metering: [\n", "--config", "is not valid YAML at line 2"),
])
def test_a_malformed_file_is_named(tmp_path: Path, text: str, key: str, reason: str) -> None:
    config = tmp_path / "link.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(str(config), env={})
    assert err.value.key == key and reason in err.value.reason, str(err.value)


@pytest.mark.parametrize("path", ["/nonexistent/link.yaml", "{tmp}"])
def test_a_config_file_that_cannot_be_read_is_named(tmp_path: Path, path: str) -> None:
    # pydantic-settings skips a missing file; one named by --config must be read.
    path = path.format(tmp=tmp_path)
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    assert err.value.key == "--config" and err.value.reason.startswith(f"cannot read {path}: ")


def test_a_config_file_that_is_a_pipe_is_read() -> None:
    # `--config /dev/stdin` or `--config <(…)`: not a regular file, which a YAML source that skips
    # such paths would silently ignore.
    read, write = os.pipe()
    os.write(write, b"metering: {topic: piped}\n")
    os.close(write)
    try:
        assert load_settings(f"/dev/fd/{read}", env={}).metering.topic == "piped"
    finally:
        os.close(read)
