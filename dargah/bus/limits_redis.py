"""Rate limits shared by every bus process of an instance, kept in Redis.

The same token bucket as :class:`dargah.bus.limits.LocalRateLimiter`, taken
atomically by a Lua script on the Redis server, so that a client's quota is
one quota however many processes and machines serve it. If Redis cannot be
reached the call is refused (``rate-limited``, retry in a second): a quota
fails closed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from dargah.registry.snapshot import Quota

log = logging.getLogger("dargah.limits")

# KEYS[1] bucket; ARGV: rate, burst, now (s). Returns the wait in microseconds (0 = go).
_TAKE = """
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 't', 's')
local tokens, stamp = tonumber(b[1]), tonumber(b[2])
if tokens == nil then tokens, stamp = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 't', tokens, 's', now)
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return math.floor(wait * 1000000)
"""


class RedisRateLimiter:
    def __init__(self, url: str, prefix: str) -> None:
        import redis.asyncio

        self._redis: Any = redis.asyncio.from_url(  # type: ignore[no-untyped-call]
            url, socket_timeout=0.5, socket_connect_timeout=0.5
        )
        self._take = self._redis.register_script(_TAKE)
        self._prefix = prefix

    async def take(self, key: str, quota: Quota, now: float) -> float:
        try:
            micros = await self._take(
                keys=[f"{self._prefix}:{key}"], args=[quota.per_second, quota.burst, time.time()]
            )
        except Exception as exc:
            log.warning("shared rate limits unavailable, refusing (fail closed): %s", exc)
            return 1.0
        return int(micros) / 1_000_000

    async def close(self) -> None:
        await self._redis.aclose()
