"""The snapshot sink: takes captured exchanges from the request path and stores them elsewhere.

``offer`` puts the raw exchange on a bounded queue and returns; a dedicated
writer thread masks it, builds the snapshot, writes SQLite and hands the result
to the Kafka publisher. The same thread purges expired snapshots periodically,
so every disk operation of this package happens on it (or, for the admin API,
on a worker thread).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from link.events import Exchange
from link.metering import EventOrigin, origin_from_settings
from link.ratelimit.bucket import TokenBucket
from link.settings import Settings
from link.snapshots import metrics
from link.snapshots.masking import PiiMasker
from link.snapshots.publisher import SnapshotPublisher
from link.snapshots.record import build_snapshot
from link.snapshots.store import SnapshotStore

__all__ = ["SnapshotSink"]

_log = logging.getLogger("stoa.link.snapshots")

_BATCH = 50
_STOP = object()


class SnapshotSink:
    """``link.events.ExchangeSink`` and ``link.component.Component`` for error snapshots."""

    name = "snapshots"

    def __init__(
        self,
        settings: Settings,
        store: SnapshotStore,
        publisher: SnapshotPublisher | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        s = settings.snapshots
        self.store = store
        self._publisher = publisher
        self._masker = PiiMasker(s.mask_keys)
        self._origin = origin_from_settings(settings)
        self._strip_prefix = settings.identity.strip_header_prefix.lower()
        self._capture_5xx = s.capture_5xx
        self._capture_4xx = s.capture_4xx
        self._all_tenants = "*" in s.tenants
        self._tenants = frozenset(s.tenants)
        self._purge_interval_s = s.purge_interval_s
        self._clock = clock
        # Captures are paced: a burst of a second's worth, then max_per_second.
        self._rate = TokenBucket(s.max_per_second)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=s.queue_max)
        self._thread: threading.Thread | None = None
        self._error = ""

    # -- the request path ----------------------------------------------------------------------
    def wants(self, status: int, tenant: str, route_snapshots: bool) -> bool:
        """A configured status class, on a route or tenant that opted in, within the capture rate."""
        if status >= 500:
            if not self._capture_5xx:
                return False
        elif status >= 400:
            if not self._capture_4xx:
                return False
        else:
            return False
        if not (route_snapshots or self._all_tenants or tenant in self._tenants):
            return False
        if self._rate.allow():
            return True
        metrics.SNAPSHOTS_DROPPED.labels("rate_limited").inc()
        return False

    def offer(self, exchange: Exchange) -> None:
        """Queue the exchange for the writer thread; drop (and count) when the queue is full."""
        if self._thread is None:
            metrics.SNAPSHOTS_DROPPED.labels("closed").inc()
            return
        try:
            self._queue.put_nowait(exchange)
        except queue.Full:
            metrics.SNAPSHOTS_DROPPED.labels("queue_full").inc()

    def set_gateway_id(self, gateway_id: str) -> None:
        """Name the gateway by the control plane's id from now on (the writer thread reads one reference)."""
        o = self._origin
        self._origin = EventOrigin(gateway_id=gateway_id, instance=o.instance, mode=o.mode)

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            await asyncio.to_thread(self.store.open)
        except (OSError, sqlite3.Error) as exc:
            # Snapshots are diagnostics: a bad db_path must not keep Link from serving traffic.
            self._error = f"cannot open {self.store.path}: {exc}"
            _log.error("snapshots disabled: %s (check snapshots.db_path)", self._error)
            return
        if self._publisher is not None:
            await self._publisher.start()
        self._thread = threading.Thread(target=self._run, name="snapshot-writer", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            # The writer finishes what is queued before the stop marker.
            await asyncio.to_thread(self._queue.put, _STOP)
            await asyncio.to_thread(thread.join, 30)
        if self._publisher is not None:
            await self._publisher.stop()
        await asyncio.to_thread(self.store.close)

    def readiness(self) -> tuple[bool, str]:
        # Snapshots are diagnostics: a failing store is reported, never a reason to refuse traffic.
        detail = f"{self.store.stored_bytes} bytes stored"
        if self._error:
            detail += f"; last error: {self._error}"
        return True, detail

    # -- the writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        next_purge = 0.0
        while True:
            now = time.monotonic()
            if now >= next_purge:
                self._purge()
                next_purge = now + self._purge_interval_s
            try:
                item = self._queue.get(timeout=max(0.01, next_purge - time.monotonic()))
            except queue.Empty:
                continue
            batch: list[Exchange] = []
            stop = item is _STOP
            if not stop:
                batch.append(item)
            while len(batch) < _BATCH and not stop:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                else:
                    batch.append(nxt)
            if batch:
                self._write(batch)
            if stop:
                return

    def _write(self, batch: list[Exchange]) -> None:
        docs: list[dict[str, Any]] = []
        for exchange in batch:
            try:
                doc = build_snapshot(
                    exchange, self._masker, self._origin, strip_header_prefix=self._strip_prefix
                )
            except Exception:
                # Never store what could not be masked.
                metrics.SNAPSHOTS_DROPPED.labels("error").inc()
                _log.exception("could not build a snapshot of request %s", exchange.request_id)
                continue
            docs.append(doc)
            for kind in doc["pii_kinds"]:
                metrics.PII_MASKED.labels(kind).inc()
        if not docs:
            return
        try:
            stored, purged = self.store.put_many(docs)
        except Exception as exc:
            self._error = f"{type(exc).__name__}: {exc}"
            metrics.SNAPSHOTS_DROPPED.labels("error").inc(len(docs))
            _log.exception("could not store %d snapshot(s)", len(docs))
            return
        self._error = ""
        metrics.SNAPSHOTS_STORED.inc(stored)
        if len(docs) > stored:
            metrics.SNAPSHOTS_DROPPED.labels("too_large").inc(len(docs) - stored)
        if purged:
            metrics.SNAPSHOTS_PURGED.labels("size_cap").inc(purged)
        metrics.STORE_BYTES.set(self.store.stored_bytes)
        if self._publisher is not None:
            for doc in docs:
                self._publisher.offer_threadsafe(doc)

    def _purge(self) -> None:
        try:
            purged = self.store.purge_expired()
        except Exception as exc:
            self._error = f"{type(exc).__name__}: {exc}"
            _log.exception("snapshot purge failed")
            return
        if purged:
            metrics.SNAPSHOTS_PURGED.labels("retention").inc(purged)
            _log.info("purged %d snapshot(s) past retention", purged)
        metrics.STORE_BYTES.set(self.store.stored_bytes)
