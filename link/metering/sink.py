"""MeteringSink: finished requests in, metering events to Kafka out, nothing lost on the way.

The request path calls :meth:`MeteringSink.offer`, which appends to a bounded
in-memory queue (O(1), no await). A background task drains the queue:

* healthy (broker connected, spool empty): batches are encoded and published,
  up to ``in_flight_batches`` at once; a batch that fails or times out is
  written to the spool;
* degraded (broker away, or anything waiting in the spool): the queue is moved
  into the spool, behind what is already there, and the spool is replayed in
  order; once it is empty the sink goes back to publishing directly.

When the queue is full, ``offer`` writes the event straight to the spool
instead of dropping it. The spool refuses the newest events only at its size
cap; those drops are counted and logged loudly. Delivery is at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from link.events import RequestOutcome
from link.metering import metrics
from link.metering.event import EventEncoder, EventOrigin, Record
from link.metering.publisher import KafkaPublisher, Publisher, PublishError
from link.metering.spool import Spool, SpoolBatch, SpoolError
from link.settings import MeteringSettings

__all__ = ["MeteringSink", "MeteringStats"]

_log = logging.getLogger("stoa.link.metering")

_ENCODE_CHUNK = 256  # events encoded between two yields to the event loop
_IDLE_S = 0.005  # poll interval of an empty queue
_BACKOFF_MIN_S = 0.1
_BACKOFF_MAX_S = 5.0
_LOUD_LOG_EVERY_S = 10.0


@dataclass(slots=True)
class MeteringStats:
    """Counters of one sink (the Prometheus metrics add up every sink of the process)."""

    offered: int = 0
    sent: int = 0  # acknowledged by the broker, directly or from the spool
    replayed: int = 0  # of which from the spool
    failed: int = 0
    spooled: int = 0
    overflowed: int = 0  # of which because the queue was full
    dropped: int = 0
    corrupt: int = 0


class MeteringSink:
    """An outcome sink and a component: ``offer`` never blocks; ``start``/``stop`` run the I/O."""

    name = "metering"

    def __init__(
        self,
        settings: MeteringSettings,
        origin: EventOrigin,
        *,
        publisher: Publisher | None = None,
    ) -> None:
        self._settings = settings
        self._encoder = EventEncoder(origin, settings.format)
        self._queue: deque[RequestOutcome] = deque()
        self._queue_max = settings.queue_max
        self._spool = Spool(
            settings.spool_dir,
            max_bytes=settings.spool_max_bytes,
            segment_bytes=settings.spool_segment_bytes,
            fsync=settings.spool_fsync,
        )
        self._publisher: Publisher = publisher or KafkaPublisher(
            settings, client_id=f"stoa-link-{origin.instance}"
        )
        self._slots = asyncio.Semaphore(settings.in_flight_batches)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._spool_open = False
        self._running = False
        self._stopping = False
        self._spooling_since: float | None = None  # start of the current degraded episode
        self._full_since: float | None = None
        self._full_logged_at = 0.0
        self._full_dropped = 0
        self.stats = MeteringStats()

    # -- the request path ----------------------------------------------------
    def offer(self, outcome: RequestOutcome) -> None:
        """Queue one finished request; O(1), never awaits, never raises for a full queue."""
        self.stats.offered += 1
        if len(self._queue) < self._queue_max:
            self._queue.append(outcome)
        else:
            self._overflow(outcome)

    def _overflow(self, outcome: RequestOutcome) -> None:
        # The queue is full (or the sink stopped): write through to the spool rather than drop.
        if not self._spool_open:
            self._drop(1, "closed")
            return
        record = self._encode_one(outcome)
        if record is None:
            return
        try:
            taken = self._spool.append((record,))
        except SpoolError as exc:
            _log.error("metering: %s; event dropped", exc)
            self._drop(1, "spool_error")
            return
        if taken:
            self.stats.spooled += 1
            self.stats.overflowed += 1
            metrics.EVENTS_SPOOLED.labels("overflow").inc()
        else:
            self._spool_full(1)

    # -- identity --------------------------------------------------------------
    def set_gateway_id(self, gateway_id: str) -> None:
        """Use the id the control plane assigned for the events that follow."""
        origin = self._encoder.origin
        self._encoder.origin = EventOrigin(gateway_id=gateway_id, instance=origin.instance, mode=origin.mode)

    # -- lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self._spool.open)
        self._spool_open = True
        self._running = True
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run(), name="metering-sender")]
        self._tasks.append(loop.create_task(self._housekeeping(), name="metering-housekeeping"))

    async def stop(self) -> None:
        """Publish or spool what is queued (bounded by the send timeout), then close."""
        if not self._running:
            return
        self._stopping = True
        sender, housekeeping = self._tasks
        housekeeping.cancel()
        # The sender is not cancelled: it may hold a batch taken from the queue. Every await in
        # it is bounded, and it leaves its loop at the next turn.
        done, _ = await asyncio.wait({sender}, timeout=2 * self._settings.send_timeout_s + 1)
        if not done:
            _log.error("metering: the sender did not stop in time; events it held may be lost")
            sender.cancel()
        await asyncio.gather(sender, housekeeping, return_exceptions=True)
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=self._settings.send_timeout_s + 1)
        self._queue_max = 0  # later offers go to _overflow, which counts them as dropped
        pending = list(self._queue)
        self._queue.clear()
        await self._flush_at_stop(pending)
        self._spool_open = False
        self._running = False
        await asyncio.to_thread(self._spool.close)
        await self._publisher.close(grace_s=2.0)  # everything was acknowledged or spooled already
        self._update_gauges()

    async def _flush_at_stop(self, outcomes: list[RequestOutcome]) -> None:
        records = await self._encode(outcomes)
        if records and self._publisher.connected and not self._spool.has_pending():
            try:
                await self._publisher.publish(records)
            except PublishError:
                self._failed(len(records))
            else:
                self._sent(len(records), replayed=False)
                return
        await self._to_spool(records, "shutdown")

    def readiness(self) -> tuple[bool, str]:
        if not self._running:
            return False, "not started"
        # A broker outage must not take the data plane out of service: the spool holds the events.
        if self._full_since is not None:
            return True, f"spool full ({self._spool.size_bytes} bytes): refusing new events"
        if self._spooling_since is not None:
            reason = self._publisher.last_error or "replaying"
            return True, f"spooling ({self._spool.pending_bytes()} bytes pending): {reason}"
        if not self._publisher.connected:
            return True, "connecting to the broker"
        return True, f"publishing to {self._settings.topic}"

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def spool(self) -> Spool:
        return self._spool

    # -- the sender --------------------------------------------------------------
    async def _run(self) -> None:
        backoff = _BACKOFF_MIN_S
        while not self._stopping:
            try:
                if not self._publisher.connected or self._spool.has_pending():
                    if await self._degraded_step():
                        backoff = _BACKOFF_MIN_S
                    else:
                        await self._wait_spilling(backoff)
                        backoff = min(backoff * 2, _BACKOFF_MAX_S)
                elif self._queue:
                    await self._linger()
                    await self._dispatch()
                else:
                    await asyncio.sleep(_IDLE_S)
            except asyncio.CancelledError:
                raise
            except SpoolError as exc:
                _log.error("metering: %s", exc)
                await self._wait_spilling(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
            except Exception:  # a bug here must not end metering for the life of the process
                _log.exception("metering sender failed; retrying")
                await asyncio.sleep(backoff)

    async def _linger(self) -> None:
        """Wait up to ``linger_ms`` for a full batch: fewer, larger batches under load."""
        batch_max = self._settings.batch_max
        deadline = time.monotonic() + self._settings.linger_ms / 1000
        while len(self._queue) < batch_max and not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, _IDLE_S))

    async def _dispatch(self) -> None:
        await self._slots.acquire()
        try:
            batch = self._take(self._settings.batch_max)
            records = await self._encode(batch)
        except BaseException:
            self._slots.release()
            raise
        task = asyncio.get_running_loop().create_task(self._send_direct(records))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _send_direct(self, records: list[Record]) -> None:
        try:
            await self._publisher.publish(records)
        except Exception as exc:  # PublishError, or a client bug: either way the spool keeps the batch
            self._failed(len(records))
            self._begin_spooling(str(exc) or type(exc).__name__)
            await self._to_spool(records, "broker")
        else:
            self._sent(len(records), replayed=False)
        finally:
            self._slots.release()

    async def _degraded_step(self) -> bool:
        """Connect, then replay the spool (queue first moved behind it); False while the broker is away."""
        try:
            await self._publisher.connect()
        except PublishError as exc:
            self._begin_spooling(str(exc))
            return False
        if self._spool.has_pending():
            self._begin_spooling("replaying")
            await self._spill_queue()  # keeps order: queued events go behind the spooled ones
            try:
                drained = await self._replay()
            except PublishError:
                return False
        else:
            drained = True
        if drained and self._spooling_since is not None:
            _log.info(
                "metering: spool drained after %.1fs; publishing directly again",
                time.monotonic() - self._spooling_since,
            )
            self._spooling_since = None
        return True

    def _begin_spooling(self, reason: str) -> None:
        if self._spooling_since is None:
            self._spooling_since = time.monotonic()
            _log.warning("metering: broker unavailable (%s); spooling to %s", reason, self._spool.directory)

    async def _replay(self) -> bool:
        """Publish the oldest spooled batches (several in flight), ack in order; True when drained."""
        batches: list[SpoolBatch] = []
        start = self._spool.cursor
        for _ in range(self._settings.in_flight_batches):
            batch = await asyncio.to_thread(self._spool.read, self._settings.batch_max, start=start)
            if batch.corrupt:
                self.stats.corrupt += batch.corrupt
                metrics.SPOOL_CORRUPT.inc(batch.corrupt)
            if batch.end == start:
                break
            batches.append(batch)
            start = batch.end
        if not batches:
            return not self._spool.has_pending()
        results = await asyncio.gather(
            *(self._publisher.publish(b.records) for b in batches), return_exceptions=True
        )
        for batch, result in zip(batches, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, PublishError):
                    self._failed(len(batch.records))
                    raise result
                raise result
            self._spool.ack(batch.end)
            self._sent(len(batch.records), replayed=True)
        return not self._spool.has_pending()

    async def _wait_spilling(self, delay: float) -> None:
        """Sleep ``delay`` while still moving the queue into the spool, so it never fills up."""
        deadline = time.monotonic() + delay
        while not self._stopping:
            await self._spill_queue()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.05))

    async def _spill_queue(self) -> None:
        while self._queue and self._spool_open:
            records = await self._encode(self._take(self._settings.batch_max))
            await self._to_spool(records, "broker")

    # -- helpers -------------------------------------------------------------------
    def _take(self, n: int) -> list[RequestOutcome]:
        q = self._queue
        return [q.popleft() for _ in range(min(n, len(q)))]

    def _encode_one(self, outcome: RequestOutcome) -> Record | None:
        try:
            return self._encoder.encode(outcome)
        except (ValueError, TypeError, AttributeError) as exc:
            _log.error("metering: cannot encode the outcome of %s: %s", outcome.request_id, exc)
            self._drop(1, "encode_error")
            return None

    async def _encode(self, outcomes: list[RequestOutcome]) -> list[Record]:
        out: list[Record] = []
        for i in range(0, len(outcomes), _ENCODE_CHUNK):
            if i:
                await asyncio.sleep(0)  # let requests through between chunks
            for outcome in outcomes[i : i + _ENCODE_CHUNK]:
                record = self._encode_one(outcome)
                if record is not None:
                    out.append(record)
        return out

    async def _to_spool(self, records: Iterable[Record], reason: str) -> None:
        records = list(records)
        if not records:
            return
        if not self._spool_open:
            self._drop(len(records), "closed")
            return
        try:
            taken = self._spool.append(records)
        except SpoolError as exc:
            _log.error("metering: %s; %d events dropped", exc, len(records))
            self._drop(len(records), "spool_error")
            return
        if taken:
            self.stats.spooled += taken
            metrics.EVENTS_SPOOLED.labels(reason).inc(taken)
        if taken < len(records):
            self._spool_full(len(records) - taken)
        if self._settings.spool_fsync == "always":
            await asyncio.to_thread(self._spool.sync)

    def _sent(self, n: int, *, replayed: bool) -> None:
        self.stats.sent += n
        if replayed:
            self.stats.replayed += n
        metrics.EVENTS_SENT.labels("replay" if replayed else "direct").inc(n)

    def _failed(self, n: int) -> None:
        self.stats.failed += n
        metrics.EVENTS_FAILED.inc(n)

    def _drop(self, n: int, reason: str) -> None:
        self.stats.dropped += n
        metrics.EVENTS_DROPPED.labels(reason).inc(n)

    def _spool_full(self, n: int) -> None:
        self._drop(n, "spool_full")
        self._full_dropped += n
        now = time.monotonic()
        if self._full_since is None:
            self._full_since = now
            metrics.SPOOL_FULL.set(1)
        if now - self._full_logged_at >= _LOUD_LOG_EVERY_S:
            self._full_logged_at = now
            _log.error(
                "METERING SPOOL FULL: %s holds %d bytes (cap %d); refusing new events, "
                "%d dropped so far in this episode. Is the broker reachable?",
                self._spool.directory, self._spool.size_bytes, self._spool.max_bytes, self._full_dropped,
            )

    def _update_gauges(self) -> None:
        metrics.QUEUE_DEPTH.set(len(self._queue))
        metrics.SPOOL_BYTES.set(self._spool.size_bytes)

    async def _housekeeping(self) -> None:
        """Gauges, the fsync interval, and the end of a spool-full episode."""
        interval_s = self._settings.spool_fsync_interval_ms / 1000
        tick = min(0.1, interval_s)
        next_sync = time.monotonic() + interval_s
        while True:
            await asyncio.sleep(tick)
            self._update_gauges()
            if self._full_since is not None and self._spool.size_bytes < 0.9 * self._spool.max_bytes:
                _log.warning("metering: spool below its cap again; %d events dropped", self._full_dropped)
                self._full_since, self._full_dropped = None, 0
                metrics.SPOOL_FULL.set(0)
            now = time.monotonic()
            if self._settings.spool_fsync != "never" and now >= next_sync:
                next_sync = now + interval_s
                if self._spool.needs_sync:
                    with contextlib.suppress(OSError):
                        await asyncio.to_thread(self._spool.sync)
