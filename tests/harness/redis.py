"""A real ``redis-server`` (Debian package) on a free loopback port, without persistence."""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

import redis

from tests.harness.procs import ManagedProcess, free_port, wait_for_port


def redis_binary() -> str | None:
    return shutil.which("redis-server")


class RedisServer:
    """``with RedisServer() as r: r.url``; ``kill()``, ``pause()``/``resume()`` and ``start()`` again.

    It is stopped by its own PID only. A restart keeps the port, so clients can reconnect.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="stoa-redis-")
        self.proc: ManagedProcess | None = None
        self._paused = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        binary = redis_binary()
        if binary is None:
            raise RuntimeError("redis-server not found (Debian package redis-server)")
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self._dir.name, "--daemonize", "no", "--loglevel", "warning"]
        self.proc = ManagedProcess(argv, log_path=Path(self._dir.name) / "redis.log")
        wait_for_port(self.port, timeout=timeout, proc=self.proc.proc)
        return self

    def client(self) -> redis.Redis:
        """A synchronous client for assertions (INFO, keys)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def command_calls(self) -> dict[str, int]:
        """Calls per command since start (INFO commandstats), e.g. ``{"evalsha": 12}``."""
        with contextlib.closing(self.client()) as c:
            stats: dict[str, Any] = c.info("commandstats")
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open but nothing answers."""
        if self.proc is not None and self.proc.alive():
            self.proc.proc.send_signal(signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        if self.proc is not None and self._paused:
            self.proc.proc.send_signal(signal.SIGCONT)
            self._paused = False

    def kill(self) -> None:
        """Die at once (SIGKILL), like a crashed server."""
        if self.proc is not None:
            self.resume()
            self.proc.kill()

    def stop(self) -> None:
        if self.proc is not None:
            self.resume()
            self.proc.stop()
            self.proc = None

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
