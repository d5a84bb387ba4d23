"""Rate limits shared by every bus process of an instance, kept in Redis.

The same token bucket as :class:`dargah.bus.limits.LocalRateLimiter`, taken
atomically by a Lua script on the Redis server, so that a client's quota is
one quota however many processes and machines serve it. The bucket's time is
the Redis server's own (``TIME``, read inside the script), never a bus node's:
nodes whose clocks disagree still share one exact quota (a node that sent its
own time would refill the bucket by the skew every time the nodes alternated).
If Redis cannot be reached the call is refused (``rate-limited``, retry in a
second): a quota fails closed.
"""

from __future__ import annotations

import logging
from typing import Any

from dargah.registry.snapshot import Quota

log = logging.getLogger("dargah.limits")

# KEYS[1] bucket; ARGV: rate, burst. Returns the wait in microseconds (0 = go). The time is
# the server's: scripts are replicated by their effects (always so from Redis 7; asked for on
# older servers), so reading TIME before writing is allowed.
_TAKE = """
if redis.replicate_commands then redis.replicate_commands() end
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
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
        """``now`` (this process's clock) is not used: the bucket runs on Redis's clock."""
        try:
            micros = await self._take(
                keys=[f"{self._prefix}:{key}"], args=[quota.per_second, quota.burst]
            )
        except Exception as exc:
            log.warning("shared rate limits unavailable, refusing (fail closed): %s", exc)
            return 1.0
        return int(micros) / 1_000_000

    async def close(self) -> None:
        await self._redis.aclose()
