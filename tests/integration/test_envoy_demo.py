"""`stoa-link demo` end to end: real Envoy, Link and MCP server processes, the demo upstream;
an allowed and a refused request, then SIGTERM stops every child."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

pytestmark = pytest.mark.integration


def _children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def test_demo_serves_and_stops_cleanly() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "link.cli", "demo", "--listen", "0", "--duration", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"})
    banner = ""
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 90
        assert proc.stdout is not None
        while "Try:" not in banner:
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"demo exited early:\n{banner}")
            banner += line
            assert time.monotonic() < deadline, banner
        while True:  # the rest of the banner
            line = proc.stdout.readline()
            banner += line
            if not line.strip():
                break
        envoy = re.search(r"Envoy \(front proxy\)\s+(http://\S+)", banner).group(1)  # type: ignore[union-attr]
        key = re.search(r"x-api-key: (\S+)'", banner).group(1)  # type: ignore[union-attr]
        children = _children(proc.pid)
        assert len(children) >= 2  # Link and Envoy at least (plus the MCP server)

        public = httpx.get(f"{envoy}/public/hello", timeout=10)
        assert public.status_code == 200
        assert public.json()["seen_by_gateway"]["x-stoa-tenant"] == "demo"
        refused = httpx.get(f"{envoy}/api/invoices/inv-1001", timeout=10)
        assert refused.status_code == 401
        assert refused.json()["error"] == "unauthorized"
        with_key = httpx.get(f"{envoy}/api/invoices/inv-1001", headers={"x-api-key": key}, timeout=10)
        assert with_key.status_code == 200, with_key.text
        assert with_key.json()["id"] == "inv-1001"

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(40) == 0
        for pid in children:
            assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid), f"child {pid} survived the demo"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def test_demo_children_die_with_the_demo() -> None:
    """Even a SIGKILLed demo leaves no Link, MCP server or Envoy behind."""
    proc = subprocess.Popen([sys.executable, "-m", "link.cli", "demo", "--listen", "0", "--duration", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 90
    while "Try:" not in (proc.stdout.readline() or "Try:"):
        assert time.monotonic() < deadline
    children = _children(proc.pid)
    assert children
    proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 30
    while any(os.path.exists(f"/proc/{pid}") and not _is_zombie(pid) for pid in children):
        assert time.monotonic() < deadline, "a demo child outlived the demo"
        time.sleep(0.1)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] == "Z"
    except FileNotFoundError:
        return True
