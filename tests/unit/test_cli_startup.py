"""Start-up errors a person can act on, through the real ``stoa-link`` command (a subprocess).

Each case: exit code 2, one line on stderr that names the setting, the cause and the
fix, and no traceback. Plus ``--help`` showing the platform's flags with their help.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Hermetic and quick: nothing that reaches out, every other port picked by the OS.
QUIET = ["--policy-enabled", "false", "--metering-enabled", "false", "--snapshots-enabled", "false",
         "--registry-source", "none", "--server-grpc-address", "127.0.0.1:0",
         "--server-admin-address", "127.0.0.1:0", "--mcp-port", "0"]


ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("STOA_") and k not in ("GATEWAY_PORT", "GATEWAY_MODE", "KAFKA_BOOTSTRAP_SERVERS")}
    # This checkout's code, whichever checkout the console script was installed from.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**env, **extra}


# The installed console script, as a person runs it (python -m link.cli where it is not installed).
_SCRIPT = Path(sys.executable).parent / "stoa-link"
_COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "link.cli"]


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_COMMAND, *args], capture_output=True, text=True, env=env or _env(), timeout=timeout)


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line the command printed for the error (log lines before it are start-up info)."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("stoa-link:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another process (here: this test) listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


@pytest.mark.parametrize(("flag", "value", "key", "fix"), [
    ("--server-grpc-address", "127.0.0.1:{port}", "server.grpc_address", "--server-grpc-address"),
    ("--server-admin-address", "127.0.0.1:{port}", "server.admin_address", "--server-admin-address"),
    ("--mcp-port", "{port}", "mcp.port", "GATEWAY_PORT"),
    ("--port", "{port}", "mcp.port", "--mcp-port"),
])
def test_a_busy_port_is_named_with_its_fix(busy_port: int, flag: str, value: str, key: str, fix: str) -> None:
    result = _run("serve", *QUIET, flag, value.format(port=busy_port))
    assert result.returncode == 2
    line = _error_line(result)
    assert key in line and f"127.0.0.1:{busy_port} is already in use" in line and fix in line


def test_an_address_of_another_machine_is_refused_with_a_reason() -> None:
    result = _run("serve", *QUIET, "--server-admin-address", "192.0.2.1:8081")  # TEST-NET-1, never ours
    assert result.returncode == 2
    assert "not an address of this machine" in _error_line(result)


@pytest.mark.parametrize(("variable", "suggestion"), [
    ("STOA_METERING_TOPC", "STOA_METERING_TOPIC"),
    ("STOA_CONTROL_PLANE_UR", "STOA_CONTROL_PLANE_URL"),
    ("STOA_SERVER_ADMIN_ADRESS", "STOA_SERVER_ADMIN_ADDRESS"),
    ("STOA_POLICY_ENABLE", "STOA_POLICY_ENABLED"),
])
def test_an_unknown_stoa_variable_is_refused_with_a_suggestion(variable: str, suggestion: str) -> None:
    result = _run("serve", *QUIET, env=_env(**{variable: "x"}))
    assert result.returncode == 2
    line = _error_line(result)
    assert variable in line and f"did you mean {suggestion}?" in line


@pytest.mark.parametrize("variable", [
    "STOA_CONTROL_PLANE_URL",  # the platform's own names
    "STOA_GATEWAY_KEY",
    "STOA_LINK_SERVICE_HOST",  # what Kubernetes sets for a Service named stoa-link
    "STOA_LINK_SERVICE_PORT_ADMIN",
    "STOA_LINK_PORT",
    "STOA_LINK_PORT_8081_TCP_ADDR",
])
def test_legitimate_stoa_variables_are_accepted(variable: str) -> None:
    from link.settings import load_settings

    value = "http://127.0.0.1:9" if variable == "STOA_CONTROL_PLANE_URL" else "10.0.0.1"
    load_settings(env={variable: value})  # no ConfigError


def test_the_demo_without_envoy_says_how_to_get_it() -> None:
    result = _run("demo", "--envoy", "/nonexistent/envoy", "--duration", "1")
    assert result.returncode == 2
    line = _error_line(result)
    assert "/nonexistent/envoy" in line and "envoy binary" in line
    assert result.stdout == ""  # nothing started, nothing to stop


@pytest.mark.parametrize("command", ["serve", "mcp"])
def test_help_shows_the_platform_flags_with_their_help(command: str) -> None:
    result = _run(command, "--help")
    assert result.returncode == 0
    out = result.stdout
    for flag, words in [("--mode", "edge-mcp"), ("--primary-gateway", "kong"), ("--metering-enabled", "Kafka"),
                        ("--opa-enabled", "Rego"), ("--keycloak-url", "Keycloak"), ("--port", "MCP"),
                        ("--mcp-enabled", "STOA_MCP_ENABLED"), ("--metering-topic", "STOA_METERING_TOPIC")]:
        line = next((ln for ln in out.splitlines() if ln.strip().startswith(flag + " ")), "")
        assert line, f"{flag} missing from `{command} --help`"
        block = out[out.index(line):out.index(line) + 300]
        assert words in block, block


def test_a_spool_directory_in_use_is_named_with_its_fix(tmp_path: Path) -> None:
    from link.metering.spool import Spool

    held = Spool(tmp_path / "spool", max_bytes=1 << 20)
    held.open()  # another Link process's spool, as far as the command can tell
    try:
        result = _run("serve", *QUIET, "--metering-enabled", "true", "--metering-bootstrap-servers", "127.0.0.1:9",
                      "--metering-spool-dir", str(tmp_path / "spool"))
    finally:
        held.close()
    assert result.returncode == 2
    line = _error_line(result)
    assert "metering.spool_dir" in line and "is in use by another process" in line and "--metering-spool-dir" in line


def test_edge_mcp_on_a_busy_port_is_named_with_its_fix(busy_port: int) -> None:
    result = _run("mcp", "--mode", "edge-mcp", "--registry-source", "none", "--metering-enabled", "false",
                  "--snapshots-enabled", "false", "--policy-enabled", "false", "--port", str(busy_port))
    assert result.returncode == 2
    line = _error_line(result)
    assert "mcp.port" in line and f"127.0.0.1:{busy_port} is already in use" in line
