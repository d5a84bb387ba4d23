"""Rate limits (token buckets) and circuit breakers, behind small interfaces.

The in-process implementations here keep their state in the bus process;
:mod:`dargah.bus.limits_redis` keeps rate limits in Redis for all processes
(``DARGAH_REDIS_URL``).
Both fail closed for quotas only in the sense that an unknown client has no
quota at all: clients have no limit until an operator sets one.

Circuit breakers and provider health stay per process on purpose: each process
learns from its own calls and probes within seconds, a provider that is down for
one node's network is down for that node only, and no shared store sits on the
call path for them (see the decisions in ``docs/architecture.md``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

from dargah.registry.snapshot import Quota


class RateLimiter(Protocol):
    async def take(self, key: str, quota: Quota, now: float) -> float:
        """0 when the call may go ahead, else the seconds to wait before retrying."""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class LocalRateLimiter:
    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}

    async def take(self, key: str, quota: Quota, now: float) -> float:
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = _Bucket(quota.burst, now)
        else:
            b.tokens = min(quota.burst, b.tokens + (now - b.stamp) * quota.per_second)
            b.stamp = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return 0.0
        return (1.0 - b.tokens) / quota.per_second if quota.per_second > 0 else 60.0


class CircuitBreaker(Protocol):
    def allow(self, provider: str, now: float) -> float:
        """0 when a call may go to the provider, else seconds until it may be tried."""

    def success(self, provider: str) -> None: ...

    def failure(self, provider: str, now: float) -> None: ...

    def state(self, provider: str, now: float) -> str: ...


@dataclass(slots=True)
class _Circuit:
    failures: int = 0
    opened_at: float = 0.0
    trial: bool = False


class LocalCircuitBreaker:
    """Closed → open after ``failures`` in a row → half-open after ``open_seconds`` (one trial)."""

    def __init__(self, failures: int, open_seconds: float) -> None:
        self._threshold = failures
        self._open_for = open_seconds
        self._circuits: dict[str, _Circuit] = {}

    def allow(self, provider: str, now: float) -> float:
        c = self._circuits.get(provider)
        if c is None or c.failures < self._threshold:
            return 0.0
        wait = c.opened_at + self._open_for - now
        if wait > 0:
            return wait
        if c.trial:  # half-open: one trial call is already deciding
            return 1.0
        c.trial = True
        return 0.0

    def success(self, provider: str) -> None:
        c = self._circuits.get(provider)
        if c is not None:
            c.failures = 0
            c.trial = False

    def failure(self, provider: str, now: float) -> None:
        c = self._circuits.setdefault(provider, _Circuit())
        c.failures += 1
        if c.failures >= self._threshold:
            c.opened_at = now
            c.trial = False

    def state(self, provider: str, now: float) -> str:
        c = self._circuits.get(provider)
        if c is None or c.failures < self._threshold:
            return "closed"
        return "open" if now < c.opened_at + self._open_for else "half-open"


def retry_after(seconds: float) -> str:
    """Whole seconds, at least 1 and at most a day."""
    return str(min(86_400, max(1, math.ceil(seconds))))


def monotonic() -> float:
    return time.monotonic()
