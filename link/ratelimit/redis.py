"""Buckets shared by every Link replica, in Redis.

One check is one round trip: a Lua script (sent by ``EVALSHA``) reads all the
request's buckets, decides, and spends a token from each only if all have one,
atomically. It uses Redis's clock (``TIME``), so replicas with drifting clocks
still agree. Each bucket is one key holding its ``full_at`` (see
``link.ratelimit.bucket``), expiring when the bucket would be full anyway.

Redis must never stall a request: every check is bounded by the timeout; after
a failure the circuit opens and checks skip Redis (the caller applies the
failure mode). The circuit is a half-open breaker: a background probe builds a
*fresh* connection pool, sends one command on it, and only when that succeeds
swaps the pool in and closes the circuit. The failed pool is discarded, never
reused: after a Redis restart every connection it holds is dead, and handing
them out one by one is what made recovery flap between "back" and
``ConnectionError``. A failure reported by a call on a discarded pool cannot
open the circuit again. Whatever a call raises (redis-py errors, ``OSError``,
a ``RuntimeError`` from a closed transport…) is a backend failure, so the
failure mode applies and nothing escapes as a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from link.ratelimit.keys import Limit
from link.ratelimit.metrics import REDIS_ERRORS, REDIS_UP
from link.ratelimit.verdict import Verdict

__all__ = ["CHECK_SCRIPT", "BackendUnavailable", "RedisBuckets"]

_log = logging.getLogger("stoa.link.ratelimit")

# The arithmetic of link.ratelimit.bucket.take, over all buckets at once.
# KEYS: the buckets; ARGV: interval_s and capacity of each bucket, in order.
# Returns {allowed, index (1-based) of the bucket to report, remaining, reset_s, retry_after_s};
# floats travel as strings because Redis truncates Lua numbers to integers.
CHECK_SCRIPT = """
-- Redis < 5 must be told to replicate effects, or it refuses writes after TIME; later ones always do.
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local eps = 1e-9
local states = redis.call('MGET', unpack(KEYS))
local new = {}
local worst, worst_retry, worst_reset = 0, 0, 0
local best, best_rem, best_reset = 0, 0, 0
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local capacity = tonumber(ARGV[2 * i])
  local start = tonumber(states[i])
  if start == nil or start < now then start = now end
  local full_at = start + interval
  local debt = full_at - now
  local window = capacity * interval
  if debt > window + eps then
    local retry = debt - window
    if worst == 0 or retry > worst_retry then
      worst, worst_retry, worst_reset = i, retry, start - now
    end
  else
    new[i] = full_at
    local rem = math.floor((window - debt) / interval + eps)
    if best == 0 or rem < best_rem or (rem == best_rem and debt > best_reset) then
      best, best_rem, best_reset = i, rem, debt
    end
  end
end
if worst > 0 then
  return {0, worst, 0, string.format('%.17g', worst_reset), string.format('%.17g', worst_retry)}
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%.17g', new[i]), 'PX', math.ceil((new[i] - now) * 1000) + 1)
end
return {1, best, best_rem, string.format('%.17g', best_reset), '0'}
"""
_SHA = hashlib.sha1(CHECK_SCRIPT.encode()).hexdigest()

# Connections per process; more concurrent checks wait for one (within their timeout)
# instead of opening a connection each, which would flood Redis in a burst.
_MAX_CONNECTIONS = 32
# Connections a recovering pool opens before it is swapped in (see RedisBuckets._warm).
_WARM_CONNECTIONS = 8
# Probes may take longer than a check: they run off the request path and may need a new connection.
_PROBE_TIMEOUT_MIN_S = 1.0


class BackendUnavailable(Exception):
    """Redis could not answer in time (or the circuit is open); apply the failure mode."""


class RedisBuckets:
    """The Redis backend: atomic multi-bucket checks with a timeout and a circuit breaker."""

    name = "ratelimit-redis"

    def __init__(self, url: str, *, timeout_s: float, retry_s: float, key_prefix: str = "stoa:rl:") -> None:
        self._url = url
        self._timeout = timeout_s
        self._retry_s = retry_s
        self._probe_timeout = max(timeout_s, _PROBE_TIMEOUT_MIN_S)
        self._prefix = key_prefix
        self._client: Redis | None = None
        self._open = False  # circuit open: skip Redis
        self._last_error = ""
        self._probe: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.checks_sent = 0  # round trips attempted (tests and the bench read it)

    # -- lifecycle -----------------------------------------------------------
    async def start(self) -> None:
        """Connect and load the script; if Redis is away, start with the circuit open."""
        client = self._ensure_client()
        try:
            await asyncio.wait_for(client.script_load(CHECK_SCRIPT), self._probe_timeout)
            REDIS_UP.set(1)
        except Exception as exc:  # any failure: start open, the probe takes over
            self._trip(exc, client)

    async def stop(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None
        if self._client is not None:
            await _close_quietly(self._client)
            self._client = None
        if self._closing:
            await asyncio.wait(self._closing, timeout=self._probe_timeout)

    def readiness(self) -> tuple[bool, str]:
        # Never unready because of Redis: the failure mode keeps traffic flowing,
        # and taking every replica out of service would be a full outage.
        if self._open:
            return True, f"redis unavailable ({self._last_error}); failure mode applies"
        return True, "redis"

    @property
    def available(self) -> bool:
        """False while the circuit is open."""
        return not self._open

    # -- checks ---------------------------------------------------------------
    async def take(self, limits: Sequence[Limit]) -> Verdict:
        """One atomic round trip for all ``limits`` (not empty); raises :class:`BackendUnavailable`."""
        if self._open:
            raise BackendUnavailable(self._last_error)
        client = self._ensure_client()
        keys = [self._prefix + lim.key for lim in limits]
        args: list[str | int] = []
        for lim in limits:
            args.append(repr(lim.interval_s))
            args.append(lim.capacity)
        self.checks_sent += 1
        # The call runs in its own task so the request never waits for its clean-up: cancelling a
        # read from a frozen Redis makes redis-py close the connection, which can itself take up
        # to the socket timeout. The request leaves at the timeout; the clean-up finishes behind it.
        task = asyncio.ensure_future(self._run(client, keys, args))
        try:
            done, _ = await asyncio.wait((task,), timeout=self._timeout)
            if not done:
                task.cancel()
                task.add_done_callback(_consume)
                raise TimeoutError(f"no answer from Redis within {self._timeout * 1000:g} ms")
            allowed, index, remaining, reset_s, retry_s = task.result()
            return Verdict(
                allowed=bool(allowed),
                limit=limits[int(index) - 1],
                remaining=int(remaining),
                reset_s=float(reset_s),
                retry_after_s=float(retry_s),
            )
        except asyncio.CancelledError:
            task.cancel()  # the request itself went away; its call must not outlive it unobserved
            task.add_done_callback(_consume)
            raise
        except Exception as exc:  # every failure class maps to the failure mode, never a 500
            self._trip(exc, client)
            raise BackendUnavailable(self._last_error) from None

    async def _run(self, client: Redis, keys: list[str], args: list[str | int]) -> list[int | bytes]:
        try:
            reply = await client.evalsha(_SHA, len(keys), *keys, *args)
        except NoScriptError:
            # Redis restarted or its script cache was flushed: EVAL runs and caches it again.
            reply = await client.eval(CHECK_SCRIPT, len(keys), *keys, *args)
        return list(reply)

    # -- circuit ----------------------------------------------------------------
    def _new_client(self) -> Redis:
        pool = BlockingConnectionPool.from_url(
            self._url,
            max_connections=_MAX_CONNECTIONS,
            timeout=self._probe_timeout,
            socket_connect_timeout=self._probe_timeout,
            socket_timeout=self._probe_timeout,
            # No client-side retries: a retry would blow the request's time budget.
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        return Redis.from_pool(pool)

    def _ensure_client(self) -> Redis:
        if self._client is None:
            self._client = self._new_client()
        return self._client

    async def _warm(self, client: Redis) -> None:
        """Load the script, and open connections before the pool goes live.

        A cold pool makes the first burst of checks connect and handshake within their
        timeout; on a loaded node some miss it, and each miss would open the circuit again.
        """
        await client.script_load(CHECK_SCRIPT)
        await asyncio.gather(*(client.ping() for _ in range(_WARM_CONNECTIONS)))

    def _retire(self, client: Redis) -> None:
        """Close a pool behind the request path (its connections may take a socket timeout to go)."""
        closing = asyncio.get_running_loop().create_task(_close_quietly(client))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    def _trip(self, exc: BaseException, client: Redis) -> None:
        """Open the circuit after a failure of ``client``; a failure of a discarded pool only counts."""
        if isinstance(exc, (TimeoutError, RedisTimeoutError)):
            kind = "timeout"
        elif isinstance(exc, (RedisConnectionError, OSError)):
            kind = "connection"
        else:
            kind = "error"
        REDIS_ERRORS.labels(kind).inc()
        if client is not self._client:
            return  # a call on a pool already replaced: its failure says nothing about the new one
        self._last_error = f"{kind}: {type(exc).__name__}"
        # The failed pool is never handed out again: the probe brings a fresh one.
        self._client = None
        self._retire(client)
        if not self._open:
            self._open = True
            REDIS_UP.set(0)
            _log.warning("redis rate limiting unavailable (%s); skipping it for now", self._last_error)
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._probe_until_back())

    async def _probe_until_back(self) -> None:
        """Half-open: a fresh, warmed pool, at once and then every ``retry_s``; close on success.

        The first probe goes at once: a lone slow answer on a loaded node then costs one probe
        round trip of open circuit, not ``retry_s``.
        """
        started = time.monotonic()
        while True:
            candidate = self._new_client()
            try:
                await asyncio.wait_for(self._warm(candidate), self._probe_timeout)
            except asyncio.CancelledError:
                self._retire(candidate)
                raise
            except Exception as exc:  # still away: discard this pool, try again later
                self._last_error = f"probe: {type(exc).__name__}"
                self._retire(candidate)
                await asyncio.sleep(self._retry_s)
                continue
            if self._client is not None:
                self._retire(self._client)
            self._client = candidate
            self._open = False
            REDIS_UP.set(1)
            _log.info("redis rate limiting back after %.1fs", time.monotonic() - started)
            return


async def _close_quietly(client: Redis) -> None:
    with contextlib.suppress(Exception):
        await client.aclose()


def _consume(task: asyncio.Task[Any]) -> None:
    """Retrieve an abandoned call's outcome so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()
