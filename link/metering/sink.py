"""MeteringSink: finished requests in, metering events to Kafka out, nothing lost on the way.

The request path calls :meth:`MeteringSink.offer`, which appends to a bounded
in-memory queue (O(1), no await). :meth:`MeteringSink.commit` makes what was
offered durable against a crash of this process: it encodes the queue and
appends it to the spool, the write-ahead log (one buffered ``write()`` into the
page cache, which survives a SIGKILL; no fsync). The access-log stream handler
commits after each message it reads, off the request path; a committer task
commits whatever else is queued every ``_IDLE_S`` (5 ms). Only acknowledged
batches move the spool's cursor; at the next start, everything after the cursor
is replayed. So an event is lost by a SIGKILL only if it was offered and not yet
committed (the access log: never once its message is handled; events offered
directly, e.g. by MCP: those of the last ``_IDLE_S`` plus one turn of the loop).

A background task sends what was committed:

* healthy (broker connected, nothing in the spool beyond what is staged in
  memory): committed batches are published from memory, up to
  ``in_flight_batches`` at once; acknowledgements move the cursor in order;
* degraded (broker away, a send failed, or a backlog from an earlier run): the
  in-memory copies are dropped and the spool is replayed from the cursor, in
  order; once it is drained the sink goes back to publishing from memory.

When the queue is full, ``offer`` commits at once instead of dropping. The
spool refuses the newest events only at its size cap; those drops are counted
and logged loudly. Delivery is at least once; ``event_id`` de-duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass

from link.backoff import Backoff
from link.events import RequestOutcome
from link.metering import metrics
from link.metering.event import EventEncoder, EventOrigin, Record
from link.metering.publisher import KafkaPublisher, Publisher, PublishError
from link.metering.spool import Position, Spool, SpoolBatch, SpoolError
from link.settings import MeteringSettings

__all__ = ["MeteringSink", "MeteringStats"]

_log = logging.getLogger("stoa.link.metering")

_IDLE_S = 0.005  # poll interval of an empty queue
_BACKOFF_MIN_S = 0.1
_BACKOFF_MAX_S = 5.0
_LOUD_LOG_EVERY_S = 10.0


@dataclass(slots=True)
class _Staged:
    """Committed records (in the spool, ending at ``end``) awaiting publication from memory."""

    records: list[Record]
    end: Position
    epoch: int
    acked: bool = False


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
        # Committed batches not yet published, mirroring the spool after its cursor (healthy mode).
        self._staged: deque[_Staged] = deque()
        self._staged_events = 0
        self._acks: deque[_Staged] = deque()  # published or in flight, in spool order
        self._backlog = False  # the spool holds events the staged batches do not mirror: replay it
        self._epoch = 0  # bumped when staged copies are dropped; late acks of older sends are ignored
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
        # The queue is full (or the sink stopped): commit this event now rather than drop it.
        if not self._spool_open:
            self._drop(1, "closed")
            return
        if self._commit([outcome]):
            self.stats.overflowed += 1
            metrics.EVENTS_SPOOLED.labels("overflow").inc()

    def commit(self) -> None:
        """Write everything queued ahead to the spool, so a crash of this process cannot lose it.

        One buffered write per call (no fsync, no await); meant for the access-log stream
        handler after each message, never for the request path.
        """
        if self._queue and self._spool_open:
            self._commit(self._take(len(self._queue)))

    def _commit(self, outcomes: list[RequestOutcome]) -> int:
        records = [r for r in map(self._encode_one, outcomes) if r is not None]
        if not records:
            return 0
        try:
            taken = self._spool.append(records)
        except SpoolError as exc:
            _log.error("metering: %s; %d events dropped", exc, len(records))
            self._drop(len(records), "spool_error")
            self._backlog = True  # what reached the disk before the error is replayed from there
            return 0
        if taken < len(records):
            self._spool_full(len(records) - taken)
        if not taken:
            return 0
        if self._backlog or not self._publisher.connected:
            self._backlog = True
            self.stats.spooled += taken
            metrics.EVENTS_SPOOLED.labels("broker").inc(taken)
        elif self._staged_events + taken > self._queue_max:
            # A slow broker: memory stays bounded, the spool takes over until it catches up.
            self._unstage("broker")
            self._backlog = True
            self.stats.spooled += taken
            metrics.EVENTS_SPOOLED.labels("broker").inc(taken)
        else:
            self._staged.append(_Staged(records[:taken], self._spool.end, self._epoch))
            self._staged_events += taken
        return taken

    def _unstage(self, reason: str) -> None:
        """Forget the in-memory copies (they are in the spool) and replay from the cursor instead."""
        n = self._staged_events
        if n:
            self.stats.spooled += n
            metrics.EVENTS_SPOOLED.labels(reason).inc(n)
        self._staged.clear()
        self._staged_events = 0
        self._acks.clear()
        self._epoch += 1

    # -- identity --------------------------------------------------------------
    def set_gateway_id(self, gateway_id: str) -> None:
        """Use the id the control plane assigned for the events that follow."""
        origin = self._encoder.origin
        self._encoder.origin = EventOrigin(gateway_id=gateway_id, instance=origin.instance, mode=origin.mode)

    # -- lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self._spool.open)
        self._spool_open = True
        self._backlog = self._spool.has_pending()  # an earlier run's unacknowledged events
        self._running = True
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run(), name="metering-sender")]
        self._tasks.append(loop.create_task(self._housekeeping(), name="metering-housekeeping"))
        self._tasks.append(loop.create_task(self._committer(), name="metering-committer"))

    async def stop(self) -> None:
        """Publish or spool what is queued (bounded by the send timeout), then close."""
        if not self._running:
            return
        self._stopping = True
        sender, housekeeping, committer = self._tasks
        housekeeping.cancel()
        committer.cancel()
        # The sender is not cancelled: it may hold a batch taken from the queue. Every await in
        # it is bounded, and it leaves its loop at the next turn.
        done, _ = await asyncio.wait({sender}, timeout=2 * self._settings.send_timeout_s + 1)
        if not done:
            _log.error("metering: the sender did not stop in time; events it held may be lost")
            sender.cancel()
        await asyncio.gather(sender, housekeeping, committer, return_exceptions=True)
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=self._settings.send_timeout_s + 1)
        self.commit()
        await self._flush_at_stop()
        self._queue_max = 0  # later offers go to _overflow, which counts them as dropped
        self._spool_open = False
        self._running = False
        await asyncio.to_thread(self._spool.close)
        await self._publisher.close(grace_s=2.0)  # everything was acknowledged or is in the spool
        self._update_gauges()

    async def _flush_at_stop(self) -> None:
        """Publish the staged batches once (bounded); what is not acknowledged stays in the spool."""
        if self._backlog or not self._staged or not self._publisher.connected:
            if self._staged:
                self._unstage("shutdown")
            return
        while self._staged:
            staged = self._staged.popleft()
            self._staged_events -= len(staged.records)
            try:
                await self._publisher.publish(staged.records)
            except PublishError:
                self._failed(len(staged.records))
                self._unstage("shutdown")
                return
            self._sent(len(staged.records), replayed=False)
            self._spool.ack(staged.end)

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
        backoff = Backoff(_BACKOFF_MIN_S, _BACKOFF_MAX_S)
        while not self._stopping:
            try:
                self.commit()
                if self._settings.spool_fsync == "always" and self._spool.needs_sync:
                    await asyncio.to_thread(self._spool.sync)
                if not self._publisher.connected or self._backlog:
                    if await self._degraded_step():
                        backoff.reset()
                    else:
                        await self._wait_spilling(backoff.next_delay())
                elif self._staged or self._queue:
                    await self._linger()
                    self.commit()
                    await self._dispatch()
                else:
                    await asyncio.sleep(_IDLE_S)
            except asyncio.CancelledError:
                raise
            except SpoolError as exc:
                _log.error("metering: %s", exc)
                await self._wait_spilling(backoff.next_delay())
            except Exception:  # a bug here must not end metering for the life of the process
                _log.exception("metering sender failed; retrying")
                await asyncio.sleep(backoff.next_delay())

    async def _linger(self) -> None:
        """Wait up to ``linger_ms`` for a full batch: fewer, larger batches under load."""
        batch_max = self._settings.batch_max
        deadline = time.monotonic() + self._settings.linger_ms / 1000
        while self._staged_events + len(self._queue) < batch_max and not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, _IDLE_S))
            self.commit()  # written ahead while lingering: a crash loses nothing that waited here

    async def _dispatch(self) -> None:
        """Publish staged batches (up to ``batch_max`` events each) while slots are free."""
        while self._staged and not self._backlog:
            await self._slots.acquire()
            if not self._staged or self._backlog:
                self._slots.release()
                return
            batch = self._next_batch()
            self._acks.append(batch)
            task = asyncio.get_running_loop().create_task(self._send_direct(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    def _next_batch(self) -> _Staged:
        """Staged commits merged up to ``batch_max`` events (a commit is never split)."""
        first = self._staged.popleft()
        records, end = list(first.records), first.end
        while self._staged and len(records) + len(self._staged[0].records) <= self._settings.batch_max:
            nxt = self._staged.popleft()
            records += nxt.records
            end = nxt.end
        self._staged_events -= len(records)
        return _Staged(records, end, first.epoch)

    async def _send_direct(self, batch: _Staged) -> None:
        try:
            await self._publisher.publish(batch.records)
        except Exception as exc:  # PublishError, or a client bug: either way the spool keeps the batch
            self._failed(len(batch.records))
            if batch.epoch == self._epoch:
                self._begin_spooling(str(exc) or type(exc).__name__)
                self._unstage("broker")
                self.stats.spooled += len(batch.records)
                metrics.EVENTS_SPOOLED.labels("broker").inc(len(batch.records))
                self._backlog = True
        else:
            self._sent(len(batch.records), replayed=False)
            if batch.epoch == self._epoch:
                batch.acked = True
                self._ack_in_order()
        finally:
            self._slots.release()

    def _ack_in_order(self) -> None:
        # Batches are acknowledged out of order; the cursor moves only over the acknowledged prefix.
        end = None
        while self._acks and self._acks[0].acked:
            end = self._acks.popleft().end
        if end is not None:
            self._spool.ack(end)

    async def _degraded_step(self) -> bool:
        """Connect, then replay the spool from the cursor; False while the broker is away."""
        try:
            await self._publisher.connect()
        except PublishError as exc:
            self._begin_spooling(str(exc))
            return False
        if self._in_flight:  # sends of the dropped staged copies: let them end before replaying
            await asyncio.wait(self._in_flight, timeout=self._settings.send_timeout_s + 1)
        if self._spool.has_pending():
            self._begin_spooling("replaying")
            self._unstage("broker")  # everything staged is in the spool, after the cursor
            self._backlog = True
            try:
                drained = await self._replay()
            except PublishError:
                return False
        else:
            drained = True
        if drained:
            self._unstage("broker")  # nothing left to mirror: every committed event was acknowledged
            self._backlog = False
            if self._spooling_since is not None:
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
        """Sleep ``delay`` while still committing the queue to the spool, so it never fills up."""
        deadline = time.monotonic() + delay
        while not self._stopping:
            self.commit()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.05))

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

    async def _committer(self) -> None:
        """Commit what was offered every ``_IDLE_S``, whatever the sender is waiting for.

        Events offered outside the access-log stream (MCP tool calls) have no commit point of
        their own; this bounds what a crash can lose of them to one interval's worth.
        """
        while True:
            await asyncio.sleep(_IDLE_S)
            try:
                self.commit()
            except Exception:  # never let a surprise end the commits; the sender logs spool errors
                _log.exception("metering: commit failed")

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
            if self._spool.cursor_dirty:  # acknowledgements reach the cursor file off the loop
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(self._spool.save_cursor)
            now = time.monotonic()
            if self._settings.spool_fsync != "never" and now >= next_sync:
                next_sync = now + interval_s
                if self._spool.needs_sync:
                    with contextlib.suppress(OSError):
                        await asyncio.to_thread(self._spool.sync)
