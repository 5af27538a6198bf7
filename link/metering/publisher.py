"""The Kafka side of metering: one aiokafka producer, configured from settings.

``publish`` sends a batch and waits until the broker acknowledged all of it
(``acks=all``) or raises :class:`PublishError`. After a failure the producer is
dropped and the next call connects afresh, so a broker that went away and came
back (possibly empty) is met with a clean client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from link.metering.event import Record
from link.settings import ConfigError, MeteringSettings

__all__ = ["KafkaPublisher", "PublishError", "Publisher", "check_compression", "producer_options"]

_log = logging.getLogger("stoa.link.metering")

# Larger than aiokafka's 16 KiB default so a linger window's worth of events fits in one batch.
_MAX_BATCH_BYTES = 512 << 10


class PublishError(Exception):
    """The broker did not acknowledge a batch (unreachable, slow or refusing)."""


def check_compression(settings: MeteringSettings) -> None:
    """Fail at start-up, naming the key, when the chosen codec's library is missing."""
    from aiokafka import codec

    available = {
        "none": True,
        "gzip": codec.has_gzip(),
        "snappy": codec.has_snappy(),
        "lz4": codec.has_lz4(),
        "zstd": codec.has_zstd(),
    }
    if not available[settings.compression]:
        raise ConfigError(
            "metering.compression",
            f"{settings.compression!r} needs the 'cramjam' package, which is not installed"
            " (pip install cramjam, or use gzip or none)",
        )


def producer_options(settings: MeteringSettings, client_id: str) -> dict[str, Any]:
    """The keyword arguments of :class:`AIOKafkaProducer` the settings call for."""
    servers = [s.strip() for s in (settings.bootstrap_servers or "").split(",") if s.strip()]
    options: dict[str, Any] = {
        "bootstrap_servers": servers,
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": settings.idempotence,
        "compression_type": None if settings.compression == "none" else settings.compression,
        # The sink lingers and builds whole batches itself; the client should ship them at once.
        "linger_ms": 0,
        "max_batch_size": _MAX_BATCH_BYTES,
        "request_timeout_ms": int(settings.send_timeout_s * 1000),
        "retry_backoff_ms": 100,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        options["ssl_context"] = create_ssl_context(
            cafile=settings.ssl_cafile, certfile=settings.ssl_certfile, keyfile=settings.ssl_keyfile
        )
    if settings.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password
    return options


class Publisher(Protocol):
    """What the sink needs from the broker side (a fake in unit tests)."""

    last_error: str

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None: ...

    async def publish(self, records: Sequence[Record]) -> None: ...

    async def close(self, grace_s: float = 5.0) -> None: ...


_PARTITION_CACHE_MAX = 10_000


class KafkaPublisher:
    """Publishes record batches to one topic; reconnects after failures."""

    def __init__(self, settings: MeteringSettings, client_id: str) -> None:
        self._settings = settings
        self._client_id = client_id
        self._topic = settings.topic
        self._producer: AIOKafkaProducer | None = None
        # Kafka's default (murmur2 of the key): a tenant always lands on the same partition.
        self._partitioner = DefaultPartitioner()
        # tenant key -> partition, for the partition list in force (murmur2 in Python, ~1.4 µs a key;
        # the same few tenants come back in every batch). Cleared when the topic's partitions change.
        self._partition_of: dict[bytes, int] = {}
        self._partitions_seen: list[int] = []
        self._handover = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()
        self.last_error = ""

    @property
    def connected(self) -> bool:
        return self._producer is not None

    async def connect(self) -> None:
        """Start a producer, bounded by the send timeout; :class:`PublishError` if the broker is away."""
        if self._producer is not None:
            return
        producer = AIOKafkaProducer(**producer_options(self._settings, self._client_id))
        try:
            await asyncio.wait_for(producer.start(), timeout=self._settings.send_timeout_s)
        except (KafkaError, OSError, TimeoutError) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            await self._discard(producer)
            raise PublishError(self.last_error) from None
        self._producer = producer
        self.last_error = ""

    async def publish(self, records: Sequence[Record]) -> None:
        """Send ``records`` in order and wait (at most ``send_timeout_s``) for every acknowledgement."""
        if not records:
            return
        producer = self._producer
        if producer is None:
            raise PublishError("not connected")
        try:
            await asyncio.wait_for(self._send_all(producer, records), timeout=self._settings.send_timeout_s)
        except (KafkaError, OSError, TimeoutError) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if self._producer is producer:  # later batches on the same producer fail alike
                self._producer = None
                self._stop_later(producer)
            raise PublishError(self.last_error) from None

    async def _send_all(self, producer: AIOKafkaProducer, records: Sequence[Record]) -> None:
        # One record batch per partition instead of one send() per event: a future per batch
        # rather than per event, which halves the client's CPU cost per event.
        topic = self._topic
        partitions = sorted(await producer.partitions_for(topic))
        available = sorted(producer.client.cluster.available_partitions_for_topic(topic)) or partitions
        by_partition: dict[int, list[Record]] = {}
        keyless = random.choice(available)  # events without a tenant: any partition, batched together
        cache = self._partition_of
        if partitions != self._partitions_seen or len(cache) > _PARTITION_CACHE_MAX:
            cache.clear()
            self._partitions_seen = partitions
        for record in records:
            key = record[0]
            if key is None:
                p = keyless
            else:
                p = cache.get(key, -1)
                if p < 0:
                    # The hash runs over every partition, available or not (Kafka's rule): the answer
                    # depends on the key and the partition list only, so it can be kept.
                    p = cache[key] = self._partitioner(key, partitions, available)
            by_partition.setdefault(p, []).append(record)
        futures = []
        # One caller at a time hands batches over: aiokafka's wait for a partition's queue to
        # drain miscounts its timeout when several callers wait on the same partition.
        async with self._handover:
            for partition, group in by_partition.items():
                batch = producer.create_batch()
                for key, value in group:
                    if batch.append(key=key, value=value, timestamp=None) is None:  # full: ship it
                        futures.append(await producer.send_batch(batch, topic, partition=partition))
                        batch = producer.create_batch()
                        batch.append(key=key, value=value, timestamp=None)
                futures.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*futures)

    async def close(self, grace_s: float = 5.0) -> None:
        """Flush what the producer holds (bounded) and stop it."""
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), timeout=grace_s)
            except (KafkaError, OSError, TimeoutError):
                _log.warning("metering: the Kafka producer did not stop cleanly")
        if self._closing:
            await asyncio.wait(self._closing, timeout=grace_s)

    def _stop_later(self, producer: AIOKafkaProducer) -> None:
        task = asyncio.get_running_loop().create_task(self._discard(producer))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _discard(self, producer: AIOKafkaProducer) -> None:
        """Abandon a producer: fail what it still holds, then stop it (bounded).

        Its batches are in the spool already and are replayed by the next producer. Left to
        itself, aiokafka's ``stop`` flushes them first, and a ``stop`` cut short by its timeout
        leaves the sender task retrying them for ever: a leak over a long outage, and late
        copies racing the replay once the broker is back.
        """
        with contextlib.suppress(Exception):
            _fail_pending(producer)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), timeout=1.0)
        sender = getattr(producer, "_sender", None)
        task = getattr(sender, "sender_task", None)
        if task is not None and not task.done():  # stop() timed out: end the retries ourselves
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)


def _fail_pending(producer: AIOKafkaProducer) -> None:
    """Fail every batch the producer still holds; nobody awaits them any more, so retrieve them."""
    accumulator = producer._message_accumulator
    batches = [b for queue in accumulator._batches.values() for b in queue]
    batches += list(accumulator._pending_batches)
    accumulator.fail_all(PublishError("producer discarded"))
    for batch in batches:
        for future in (batch.future, batch._drain_waiter):
            if future.done() and not future.cancelled():
                future.exception()
