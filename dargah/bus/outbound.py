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


class Refused(Exception):
    """The bus must not connect there; the message says why (safe to show the caller)."""


class OutboundGuard:
    def __init__(self, policy: TargetPolicy, ttl: float = TTL) -> None:
        self.policy = policy
        self.ttl = ttl
        self._cache: dict[tuple[str, int], tuple[float, list[tuple[int, str]] | str]] = {}

    async def addresses(self, host: str, port: int) -> list[tuple[int, str]]:
        """(family, address) pairs to connect to for ``host``, all allowed; raises Refused
        when the host's addresses break the policy, OSError when it does not resolve."""
        now = time.monotonic()
        hit = self._cache.get((host, port))
        if hit is None or hit[0] <= now:
            try:
                answer: list[tuple[int, str]] | str = await self._check(host, port)
            except Refused as exc:
                answer = str(exc)
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            self._cache[(host, port)] = hit = (now + self.ttl, answer)
        if isinstance(hit[1], str):
            raise Refused(hit[1])
        return hit[1]

    async def _check(self, host: str, port: int) -> list[tuple[int, str]]:
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
