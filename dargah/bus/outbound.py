"""The addresses the bus may connect to, checked when it connects (no DNS rebinding).

The registry refuses a provider or webhook URL whose literal host breaks the instance's
:class:`~dargah.core.netaddr.TargetPolicy`; a name passes there, so it is resolved here,
every address it resolves to is checked, and the connection goes to a checked address, never
to the name (a resolver answering differently a moment later changes nothing). Answers are
kept :data:`TTL` seconds per host and port; resolution runs in the loop's executor, so it
never blocks other calls, and only a new connection needs it (pooled ones are reused).
"""

from __future__ import annotations

import asyncio
import socket
import time

from dargah.core.netaddr import BadTarget, IPAddress, TargetPolicy, parse_host

TTL = 10.0
MAX_CACHED = 10_000
Addresses = list[tuple[int, str]]
Answer = tuple[float, Addresses | str]
"""Until when (monotonic), and the allowed addresses or why the host is refused."""


class Refused(Exception):
    """The bus must not connect there; the message says why (safe to show the caller)."""


class OutboundGuard:
    def __init__(self, policy: TargetPolicy, ttl: float = TTL) -> None:
        self.policy = policy
        self.ttl = ttl
        self._cache: dict[tuple[str, int], Answer] = {}
        self._pending: dict[tuple[str, int], asyncio.Future[Answer]] = {}

    async def addresses(self, host: str, port: int) -> Addresses:
        """(family, address) pairs to connect to for ``host``, all allowed; raises Refused
        when the host's addresses break the policy, OSError when it does not resolve."""
        key = (host, port)
        hit = self._cache.get(key)
        if hit is None or hit[0] <= time.monotonic():
            # One resolution per host at a time: the connections a burst opens share it.
            pending = self._pending.get(key)
            if pending is None:
                pending = self._pending[key] = asyncio.ensure_future(self._resolve(key))
                pending.add_done_callback(self._resolved)
            hit = await asyncio.shield(pending)
        if isinstance(hit[1], str):
            raise Refused(hit[1])
        return hit[1]

    def _resolved(self, future: asyncio.Future[Answer]) -> None:
        for key, pending in list(self._pending.items()):
            if pending is future:
                del self._pending[key]
        if not future.cancelled():
            future.exception()  # retrieved: callers that gave up meanwhile see nothing logged

    async def _resolve(self, key: tuple[str, int]) -> Answer:
        try:
            answer: Addresses | str = await self._check(*key)
        except Refused as exc:
            answer = str(exc)
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        hit: Answer = (time.monotonic() + self.ttl, answer)
        self._cache[key] = hit
        return hit

    async def _check(self, host: str, port: int) -> Addresses:
        try:
            literal = parse_host(host)
        except BadTarget as exc:
            raise Refused(str(exc)) from None
        if self.policy.production and (host.lower().rstrip("."), port) == self.policy.public:
            raise Refused(f"the bus does not connect to {host}: it is its own public URL")
        if literal is not None:
            ips: list[IPAddress] = [literal]
        else:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
            ips = []
            for _family, _type, _proto, _name, sockaddr in infos:
                ip = parse_host(str(sockaddr[0]).split("%", 1)[0])
                if ip is not None and ip not in ips:
                    ips.append(ip)
            if not ips:
                raise OSError(f"{host} has no address")
        for ip in ips:
            why = self.policy.refusal(ip, port)
            if why:
                shown = host if literal is None else str(ip)
                raise Refused(f"the bus does not connect to {shown} ({ip}): {why}")
        return [(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, str(ip)) for ip in ips]
