"""Publishing stored snapshots to Kafka (``stoa.errors``), best effort and off the request path.

The local store is the record; Kafka is a copy for the platform. So a snapshot
that cannot be published (broker away, queue full) is counted and logged, never
retried forever and never allowed to slow anything else down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from link.backoff import Backoff
from link.metering.event import Record
from link.metering.publisher import KafkaPublisher, PublishError
from link.settings import MeteringSettings, SnapshotSettings
from link.snapshots import metrics

__all__ = ["SnapshotPublisher"]

_log = logging.getLogger("stoa.link.snapshots")

_BATCH = 100
_BACKOFF_MAX_S = 30.0
_LOG_EVERY_S = 60.0


class SnapshotPublisher:
    """An asyncio task that sends snapshot documents to ``settings.snapshots.topic``, key = tenant."""

    def __init__(
        self, metering: MeteringSettings, snapshots: SnapshotSettings, client_id: str = "stoa-link-snapshots"
    ) -> None:
        # Same broker and security settings as metering, another topic.
        self._kafka = KafkaPublisher(metering.model_copy(update={"topic": snapshots.topic}), client_id)
        self._queue: asyncio.Queue[Record] = asyncio.Queue(maxsize=snapshots.publish_queue_max)
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_log = 0.0
        self.topic = snapshots.topic

    @property
    def last_error(self) -> str:
        return self._kafka.last_error

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="snapshot-publisher")

    async def stop(self, grace_s: float = 5.0) -> None:
        task, self._task = self._task, None
        if task is not None:
            # Give queued snapshots a moment to go out, then stop waiting for the broker.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained(), timeout=grace_s)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._kafka.close(grace_s)

    async def _drained(self) -> None:
        await self._queue.join()

    def offer_threadsafe(self, doc: dict[str, Any]) -> None:
        """Called from the writer thread: hand one stored snapshot to the loop (never blocks)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            metrics.SNAPSHOTS_PUBLISHED.labels("dropped").inc()
            return
        tenant = str(doc.get("tenant_id", ""))
        record = (tenant.encode() if tenant else None,
                  json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode())
        with contextlib.suppress(RuntimeError):  # loop closed in between: shutting down
            loop.call_soon_threadsafe(self._enqueue, record)

    def _enqueue(self, record: Record) -> None:
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            metrics.SNAPSHOTS_PUBLISHED.labels("dropped").inc()

    async def _run(self) -> None:
        backoff = Backoff(0.5, _BACKOFF_MAX_S)
        while True:
            record = await self._queue.get()
            batch = [record]
            while len(batch) < _BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._kafka.connect()
                await self._kafka.publish(batch)
            except PublishError as exc:
                metrics.SNAPSHOTS_PUBLISHED.labels("failed").inc(len(batch))
                self._warn(f"could not publish {len(batch)} snapshot(s) to {self.topic}: {exc}")
                await asyncio.sleep(backoff.next_delay())
                continue
            except Exception:  # a bug here must not end publishing for good
                metrics.SNAPSHOTS_PUBLISHED.labels("failed").inc(len(batch))
                _log.exception("snapshot publishing failed")
                continue
            finally:
                for _ in batch:
                    self._queue.task_done()
            backoff.reset()
            metrics.SNAPSHOTS_PUBLISHED.labels("ok").inc(len(batch))

    def _warn(self, message: str) -> None:
        # A broker outage would otherwise log once per snapshot.
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY_S:
            self._last_log = now
            _log.warning("snapshots: %s (stored locally; further failures logged every %ds)",
                         message, int(_LOG_EVERY_S))
