"""Rate-limit phase: token buckets per tenant, consumer and route.

A request takes one token from each bucket that applies to it (see
``link.ratelimit.keys``) or from none. Refused: 429 with ``Retry-After`` and
the ``RateLimit-*`` headers; allowed: the same headers tell the client what is
left. With ``ratelimit.backend: redis`` the buckets are shared by all replicas;
when Redis cannot answer within ``redis_timeout_ms``, ``redis_failure_mode``
decides: ``local`` (in-process buckets), ``allow`` or ``deny`` (503).
"""

from __future__ import annotations

from link.model import Decision, Outcome, RequestContext
from link.ratelimit.headers import rate_limit_headers
from link.ratelimit.keys import LimitSelector
from link.ratelimit.local import LocalLimiter
from link.ratelimit.metrics import LIMITED, LOCAL_EVICTIONS, REDIS_CHECKS
from link.ratelimit.redis import BackendUnavailable, RedisBuckets
from link.ratelimit.verdict import Verdict
from link.settings import Settings

__all__ = ["RateLimitPhase", "build_ratelimit_phase"]


class RateLimitPhase:
    """The pipeline phase; also a Component (``LinkApp.start`` starts it) for the Redis connection."""

    name = "ratelimit"

    def __init__(self, settings: Settings, *, local: LocalLimiter | None = None) -> None:
        rl = settings.ratelimit
        self._selector = LimitSelector(rl)
        self._local = local if local is not None else LocalLimiter(rl.local_max_buckets)
        self._redis: RedisBuckets | None = None
        if rl.backend == "redis" and rl.redis_url:
            self._redis = RedisBuckets(
                rl.redis_url,
                timeout_s=rl.redis_timeout_ms / 1000,
                retry_s=rl.redis_retry_s,
                key_prefix=rl.redis_key_prefix,
            )
        self._failure_mode = rl.redis_failure_mode
        self._evicted = 0
        # Bound once: labels() per request would cost a dict lookup and a lock.
        self._m_limited = {scope: LIMITED.labels(scope) for scope in ("tenant", "consumer", "route")}
        self._m_redis = {result: REDIS_CHECKS.labels(result) for result in (
            "allowed", "limited", "fallback_allowed", "fallback_limited", "skipped", "refused")}

    @property
    def redis(self) -> RedisBuckets | None:
        """The Redis backend, when configured."""
        return self._redis

    # -- Component -----------------------------------------------------------
    async def start(self) -> None:
        if self._redis is not None:
            await self._redis.start()

    async def stop(self) -> None:
        if self._redis is not None:
            await self._redis.stop()

    def readiness(self) -> tuple[bool, str]:
        if self._redis is not None:
            return self._redis.readiness()
        return True, "local"

    # -- Phase -----------------------------------------------------------------
    async def __call__(self, ctx: RequestContext) -> Decision | None:
        limits = self._selector.select(ctx)
        if not limits:
            return None
        if self._redis is None:
            verdict = self._local.take(limits)
        else:
            try:
                verdict = await self._redis.take(limits)
                self._m_redis["allowed" if verdict.allowed else "limited"].inc()
            except BackendUnavailable:
                ctx.record.ratelimit_backend = "unavailable"
                if self._failure_mode == "deny":
                    self._m_redis["refused"].inc()
                    return Decision.deny(
                        503, Outcome.ERROR, "ratelimit_unavailable", "rate limiting is unavailable",
                        {"retry-after": "1"},
                    )
                if self._failure_mode == "allow":
                    self._m_redis["skipped"].inc()
                    return None  # no limit applied (a contract requiring one refuses the request)
                verdict = self._local.take(limits)
                self._m_redis["fallback_allowed" if verdict.allowed else "fallback_limited"].inc()
        if self._local.evicted != self._evicted:
            self._count_evictions()
        ctx.record.ratelimit_applied = True
        return self._answer(ctx, verdict)

    def _answer(self, ctx: RequestContext, verdict: Verdict) -> Decision | None:
        headers = rate_limit_headers(verdict)
        if verdict.allowed:
            ctx.response_headers.update(headers)
            return None
        scope = verdict.limit.scope
        self._m_limited[scope].inc()
        ctx.record.ratelimit_scope = scope
        message = f"{scope} rate limit exceeded"
        return Decision.deny(429, Outcome.RATE_LIMITED, "rate_limited", message, headers)

    def _count_evictions(self) -> None:
        evicted = self._local.evicted
        LOCAL_EVICTIONS.inc(evicted - self._evicted)
        self._evicted = evicted


def build_ratelimit_phase(settings: Settings) -> RateLimitPhase:
    """The rate-limit phase the settings describe."""
    return RateLimitPhase(settings)
