"""The Dockerfile, checked by structure (no container engine runs here to build it).

Multi-stage on python:3.11-slim; the final stage runs as a non-root user, has a
health check on the admin /health/live, installs nothing (no compilers), keeps
every write on the /var/lib/stoa volume; and it agrees with what the Kubernetes
manifests assume (uid, entry point, settings keys).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from link.injector import InjectorConfig
from link.injector.sidecar import LINK_UID
from link.settings import load_settings
from tests.harness.procs import free_port

ROOT = Path(__file__).resolve().parents[2]
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|clang|make|build-essential|cc|apt-get|apk|pip install)\b")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [arg for o, arg in self.instructions if o == op]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined and comments dropped."""
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped too
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
        elif not stages and op == "ARG":
            key, _, value = rest.partition("=")
            args[key.strip()] = value.strip()
        elif stages:
            stages[-1].instructions.append((op, rest.strip()))
    return args, stages


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for arg in stage.all("ENV"):
        for token in shlex.split(arg):
            key, _, value = token.partition("=")
            env[key] = value
    return env


def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse((ROOT / "Dockerfile").read_text())


def test_multi_stage_on_python_slim() -> None:
    _, stages = dockerfile()
    assert len(stages) >= 2
    assert all(s.base.startswith("python:3.11-slim") for s in stages)
    final = stages[-1]
    copies = final.all("COPY")
    assert copies and all(c.startswith("--from=") for c in copies), "the final stage copies built artefacts only"


def test_final_stage_has_no_build_tools_and_installs_nothing() -> None:
    _, stages = dockerfile()
    build, final = stages[0], stages[-1]
    assert any(BUILD_TOOLS.search(r) for r in build.all("RUN")), "the parser must see the build stage's tools"
    for run in final.all("RUN"):
        assert not BUILD_TOOLS.search(run), f"final stage installs or builds: {run}"


def test_final_stage_runs_as_the_non_root_user_the_manifests_expect() -> None:
    _, stages = dockerfile()
    final = stages[-1]
    users = final.all("USER")
    assert users, "no USER in the final stage"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid and int(gid) != 0
    # Kubernetes' runAsNonRoot can only verify a numeric user; the sidecar spec runs the same uid.
    assert int(uid) == LINK_UID
    ops = [op for op, _ in final.instructions]
    assert "RUN" not in ops[ops.index("USER"):], "nothing runs as root after USER"


def test_health_check_probes_live_endpoint() -> None:
    _, stages = dockerfile()
    (check,) = stages[-1].all("HEALTHCHECK")
    assert "CMD" in check and "/health/live" in check and "--timeout=" in check
    assert "curl" not in check and "wget" not in check, "neither is in python:3.11-slim"


def _run_health_check(port: int) -> int:
    _, stages = dockerfile()
    (check,) = stages[-1].all("HEALTHCHECK")
    argv = json.loads(check[check.index("CMD") + 3:])
    assert argv[:2] == ["python", "-c"]
    env = {**os.environ, "STOA_SERVER_ADMIN_ADDRESS": f"127.0.0.1:{port}"}
    return subprocess.run([sys.executable, "-c", argv[2]], env=env, capture_output=True, timeout=30).returncode


def test_health_check_command_really_checks() -> None:
    live = {"status": 200}

    class Admin(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(live["status"] if self.path == "/health/live" else 404)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    port = free_port()
    server = HTTPServer(("127.0.0.1", port), Admin)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert _run_health_check(port) == 0
        live["status"] = 503
        assert _run_health_check(port) != 0
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert _run_health_check(port) != 0  # nothing listening


def test_writable_paths_are_settings_on_the_volume() -> None:
    _, stages = dockerfile()
    final = stages[-1]
    (volume,) = final.all("VOLUME")
    data_dir = shlex.split(volume.strip("[]").replace(",", " "))[0]
    env = env_of(final)
    settings = load_settings(env={k: v for k, v in env.items() if k.startswith("STOA_")})
    assert settings.metering.spool_dir.startswith(data_dir + "/")
    assert settings.snapshots.db_path.startswith(data_dir + "/")
    assert settings.server.admin_address == "0.0.0.0:8081"  # reachable by probes and `docker run -p`
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"  # a read-only root: no .pyc written at run time


def test_entry_point_matches_the_commands_the_manifests_use() -> None:
    _, stages = dockerfile()
    final = stages[-1]
    (entry,) = final.all("ENTRYPOINT")
    (cmd,) = final.all("CMD")
    assert entry == '["stoa-link"]'
    # The sidecar runs the image's command, plus the settings file it mounts (--config).
    args = InjectorConfig().link_args
    assert args[:len(json.loads(cmd))] == tuple(json.loads(cmd))
    from link.cli import build_parser

    parser = build_parser()
    parsed = parser.parse_args(list(args))
    assert parsed.command == "serve" and parsed.config == "/etc/stoa-link/config/link.yaml"


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "tests", "**/__pycache__"} <= ignored
    assert "README.md" not in ignored and "link" not in ignored  # pyproject needs them
