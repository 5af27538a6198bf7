"""Which buckets a request draws from.

Every applicable limit is its own bucket and a request passes only if all of
them have a token:

- ``tenant``: ``ratelimit.tenants[tenant]``, else ``ratelimit.tenant_default``;
  the whole tenant shares it.
- ``consumer``: ``ratelimit.consumers[consumer]``, else
  ``ratelimit.consumer_default``; one bucket per consumer of a tenant (all
  anonymous callers of a tenant are the one consumer ``anonymous``).
- ``route``: the matched route's or tool's ``rate_limit`` (``Tool.spec.rateLimit``);
  one bucket per tenant and route.

Keys carry the tenant in a Redis hash tag (``{tenant}``) so all buckets of one
request live in one cluster slot, which one atomic script needs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

from link.model import RequestContext
from link.rates import Rate, parse_rate
from link.settings import RateLimitSettings

__all__ = ["Limit", "LimitSelector", "Scope"]

_log = logging.getLogger("stoa.link.ratelimit")

Scope = Literal["tenant", "consumer", "route"]

# Stands for "no tenant known" in keys; not a valid Kubernetes namespace, so no clash.
_NO_TENANT = "-"
# Selections are cached per (tenant, consumer, route); this bounds the cache.
_CACHE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Limit:
    """One bucket: ``rate`` refilled continuously, holding at most ``capacity`` tokens."""

    scope: Scope
    key: str  # backend-neutral; backends add their own prefix
    rate: Rate
    capacity: int
    interval_s: float = field(init=False, compare=False)  # seconds to refill one token

    def __post_init__(self) -> None:
        # Stored, not a property: read for every bucket of every request.
        object.__setattr__(self, "interval_s", self.rate.period_s / self.rate.limit)


class LimitSelector:
    """Turns settings and a request's tenant, consumer and route into its buckets."""

    def __init__(self, settings: RateLimitSettings) -> None:
        self._burst = settings.burst_factor
        self._tenants = {t: parse_rate(r) for t, r in settings.tenants.items()}
        self._consumers = {c: parse_rate(r) for c, r in settings.consumers.items()}
        self._tenant_default = parse_rate(settings.tenant_default) if settings.tenant_default else None
        self._consumer_default = parse_rate(settings.consumer_default) if settings.consumer_default else None
        self._route_rates: dict[str, Rate | None] = {}
        self._cache: dict[tuple[str, str, str, str], tuple[Limit, ...]] = {}

    def capacity(self, rate: Rate) -> int:
        """Bucket size: the limit times the burst factor, at least one token."""
        return max(1, int(rate.limit * self._burst))

    def select(self, ctx: RequestContext) -> tuple[Limit, ...]:
        """The buckets this request must take a token from (empty: not limited)."""
        route = ctx.route
        tenant = ctx.principal.tenant or (route.tenant if route else None) or ctx.request.tool_tenant or ""
        consumer = ctx.principal.consumer
        route_name = route.name if route is not None else ""
        route_rate = (route.rate_limit or "") if route is not None else ""
        cache_key = (tenant, consumer, route_name, route_rate)
        found = self._cache.get(cache_key)
        if found is None:
            found = self._build(tenant, consumer, route_name, route_rate)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()  # rare; rebuilding is cheap
            self._cache[cache_key] = found
        return found

    def _build(self, tenant: str, consumer: str, route_name: str, route_rate: str) -> tuple[Limit, ...]:
        tag = "{" + (tenant or _NO_TENANT) + "}"
        limits: list[Limit] = []
        rate = self._tenants.get(tenant, self._tenant_default)
        if rate is not None:
            limits.append(Limit("tenant", f"{tag}:t", rate, self.capacity(rate)))
        rate = self._consumers.get(consumer, self._consumer_default)
        if rate is not None and consumer:
            limits.append(Limit("consumer", f"{tag}:c:{consumer}", rate, self.capacity(rate)))
        rate = self._route_rate(route_rate)
        if rate is not None and route_name:
            limits.append(Limit("route", f"{tag}:r:{route_name}", rate, self.capacity(rate)))
        return tuple(limits)

    def _route_rate(self, text: str) -> Rate | None:
        if not text:
            return None
        if text not in self._route_rates:
            # Routes from settings were validated; tool manifests may not have been:
            # a bad rate there must not take the request path down.
            try:
                self._route_rates[text] = parse_rate(text)
            except ValueError as exc:
                _log.warning("ignoring route rate limit: %s", exc)
                self._route_rates[text] = None
        return self._route_rates[text]
