"""Rate strings such as ``100/min`` (Tool.spec.rateLimit, tenant defaults)."""

from __future__ import annotations

from dataclasses import dataclass

_UNITS: dict[str, float] = {
    "s": 1.0, "sec": 1.0, "second": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0,
    "h": 3600.0, "hour": 3600.0,
    "d": 86400.0, "day": 86400.0,
}


@dataclass(frozen=True, slots=True)
class Rate:
    """``limit`` requests per ``period_s`` seconds."""

    limit: int
    period_s: float

    @property
    def per_second(self) -> float:
        return self.limit / self.period_s

    def __str__(self) -> str:
        for name, secs in (("sec", 1.0), ("min", 60.0), ("hour", 3600.0), ("day", 86400.0)):
            if self.period_s == secs:
                return f"{self.limit}/{name}"
        return f"{self.limit}/{self.period_s}s"


def parse_rate(text: str) -> Rate:
    """Parse ``N/sec|min|hour|day``; raise ValueError with the reason otherwise."""
    count, sep, unit = text.strip().partition("/")
    if not sep or not count.strip().isdigit():
        raise ValueError(f"rate {text!r}: expected N/sec, N/min, N/hour or N/day")
    period = _UNITS.get(unit.strip().lower())
    if period is None:
        raise ValueError(f"rate {text!r}: unknown unit {unit!r} (sec, min, hour, day)")
    limit = int(count)
    if limit <= 0:
        raise ValueError(f"rate {text!r}: the limit must be positive")
    return Rate(limit=limit, period_s=period)
