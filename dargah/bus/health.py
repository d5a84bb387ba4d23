"""Active health checks: every provider endpoint is probed now and then, traffic or not.

A probe opens a TCP connection (TLS included for https providers) to each
endpoint that serves an active bus service and records whether it could, and
how long it took. A provider that nobody called for an hour is still known to
be down before the next citizen needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from dargah.core.background import Background
from dargah.registry.snapshot import Snapshot

log = logging.getLogger("dargah.health")
PROBE_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class Probe:
    provider: str
    endpoint: str
    ok: bool
    latency_ms: float
    error: str | None
    checked_at: float


class HealthChecker(Background):
    def __init__(self, snapshot: Callable[[], Snapshot], interval: float) -> None:
        self._snapshot = snapshot
        self.interval = interval
        self.results: dict[str, Probe] = {}  # by provider subsystem (its first endpoint)
        self.by_endpoint: dict[str, Probe] = {}  # by "host:port", every endpoint

    async def _run(self) -> None:
        while True:
            try:
                await self.check_all()
            except Exception:
                log.exception("health checks failed")
            await asyncio.sleep(self.interval)

    async def check_all(self) -> None:
        snap = self._snapshot()
        endpoints: dict[tuple[str, int, bool], str] = {}
        first: dict[str, str] = {}
        for svc in sorted(snap.services.values(), key=lambda s: s.id):
            if svc.active:
                endpoints.setdefault((svc.host, svc.port, svc.scheme == "https"), svc.provider)
                first.setdefault(svc.provider, f"{svc.host}:{svc.port}")
        probes = await asyncio.gather(
            *(self._probe(p, *where) for where, p in sorted(endpoints.items()))
        )
        self.by_endpoint = {p.endpoint: p for p in probes}
        self.results = {
            provider: self.by_endpoint[where]
            for provider, where in first.items()
            if where in self.by_endpoint
        }

    async def _probe(self, provider: str, host: str, port: int, tls: bool) -> Probe:
        started = time.perf_counter()
        error = None
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    host, port, ssl=ssl.create_default_context() if tls else None
                ),
                PROBE_TIMEOUT,
            )
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        except TimeoutError:
            error = f"no answer within {PROBE_TIMEOUT:g} s"
        except OSError as exc:
            error = exc.strerror or str(exc)
        return Probe(
            provider,
            f"{host}:{port}",
            error is None,
            round((time.perf_counter() - started) * 1000, 2),
            error,
            time.time(),
        )
