"""Health: active checks of every provider endpoint, and this node's own readiness.

A probe opens a TCP connection (TLS included for https providers) to each
endpoint that serves an active bus service and records whether it could, and
how long it took. A provider that nobody called for an hour is still known to
be down before the next citizen needs it. Probes and their results stay per process (see
the decisions in ``docs/architecture.md``).

:class:`Readiness` answers ``/readyz`` for load balancers: ready while the node reaches its
database and its message log, knows the registry, and is not draining (stopping after
SIGTERM); ``/healthz`` (liveness) only says the process answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from dargah.bus.outbound import OutboundGuard, Refused
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
    def __init__(
        self, snapshot: Callable[[], Snapshot], interval: float, guard: OutboundGuard
    ) -> None:
        self._snapshot = snapshot
        self._guard = guard
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
            await asyncio.wait_for(self._connect(host, port, tls), PROBE_TIMEOUT)
        except TimeoutError:
            error = f"no answer within {PROBE_TIMEOUT:g} s"
        except Refused as exc:
            error = str(exc)
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

    async def _connect(self, host: str, port: int, tls: bool) -> None:
        """Open and close a connection to the host's first allowed address (as calls do)."""
        family, address = (await self._guard.addresses(host, port))[0]
        _reader, writer = await asyncio.open_connection(
            address,
            port,
            family=family,
            ssl=ssl.create_default_context() if tls else None,
            server_hostname=host if tls else None,
        )
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


READY_TIMEOUT = 2.0


class Readiness:
    """This node's readiness for a load balancer, answered within :data:`READY_TIMEOUT`.

    ``check`` (blocking: it reaches the database) runs in a thread, one at a time: a probe
    that arrives while one is still running waits for that one instead of starting another,
    so a database that stopped answering holds at most one thread. A check that takes longer
    than the timeout counts as not ready (``database`` false).
    """

    def __init__(self, check: Callable[[], dict[str, bool]]) -> None:
        self._check = check
        self._running: asyncio.Future[dict[str, bool]] | None = None

    async def __call__(self) -> dict[str, bool]:
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(asyncio.to_thread(self._check))
        try:
            return await asyncio.wait_for(asyncio.shield(self._running), READY_TIMEOUT)
        except TimeoutError:
            return {"database": False}
        except Exception as exc:
            log.warning("readiness check failed: %s", exc)
            return {"database": False}
