"""The bus as one ASGI application: its own paths are served here, anything else by ``fallback``.

No web framework sits on the bus's paths: they are dispatched by prefix to
plain handlers. The management API, console and portal (Starlette apps) get
the rest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from dargah.bus import endpoints
from dargah.bus.events.delivery import DeliveryWorker
from dargah.bus.events.handler import EventsHandler
from dargah.bus.proxy import ProxyHandler, Receive, Scope, Send, send_problem
from dargah.bus.runtime import BusRuntime

log = logging.getLogger("dargah.bus")
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BusApp:
    direct_prefix = b"/r1/"
    direct_except = (b"/r1/meta/",)

    def __init__(
        self,
        rt: BusRuntime,
        fallback: ASGIApp | None = None,
        on_startup: list[Callable[[], Awaitable[None]]] | None = None,
        on_shutdown: list[Callable[[], Awaitable[None]]] | None = None,
    ) -> None:
        self.rt = rt
        self.proxy = ProxyHandler(rt)
        # The server hands /r1/ calls (not /r1/meta/) straight to the proxy, without ASGI.
        self.direct = self.proxy.direct
        wake = asyncio.Event()
        self.events = EventsHandler(rt, self.proxy, wake)
        self.deliveries = DeliveryWorker(rt, wake)
        self.fallback = fallback
        self._on_startup = on_startup or []
        self._on_shutdown = on_shutdown or []

    def drain(self) -> None:
        """Stopping: answer ``/readyz`` 503 from now on, and go on serving what arrives."""
        self.rt.draining = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _is_bus_path(scope["path"]):
            try:
                await self._bus(scope, receive, send)
            except Exception:
                log.exception("unexpected error on %s", scope["path"][:200])
                await send_problem(send, "internal", "an unexpected error occurred", None, [])
            return
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if self.fallback is not None:
            await self.fallback(scope, receive, send)
        else:
            await send_problem(send, "not-found", "no such endpoint", None, [])

    async def _bus(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path.startswith("/r1/"):
            if path.startswith("/r1/meta/"):
                await endpoints.meta_endpoint(self.rt, scope, send)
            else:
                await self.proxy(scope, receive, send)
        elif path.startswith("/e1/"):
            await self.events(scope, receive, send)
        elif path == "/oauth/token":
            await endpoints.token_endpoint(self.rt, scope, receive, send)
        elif path == "/.well-known/jwks.json":
            await endpoints.jwks_endpoint(self.rt, send)
        elif path == "/metrics":
            await endpoints.metrics_endpoint(self.rt, send)
        else:
            await endpoints.health_endpoint(self.rt, path, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message: dict[str, Any] = dict(await receive())
            if message["type"] == "lifespan.startup":
                try:
                    await self.rt.start()
                    self.deliveries.start()
                    for hook in self._on_startup:
                        await hook()
                except Exception as exc:
                    log.exception("bus failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for hook in self._on_shutdown:
                    try:
                        await hook()
                    except Exception:
                        log.exception("shutdown hook failed")
                await self.deliveries.stop()
                await self.rt.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


ROUTES: dict[str, tuple[str, str]] = {
    "/r1/": (
        "bearer",
        "the calling subsystem's access token; a grant and purpose per call (§3-§4)",
    ),
    "/r1/meta/": ("bearer", "the caller's access token; it sees only services it may call (§5)"),
    "/e1/": ("bearer", "the publisher's or subscriber's access token; grants on the topic (§7)"),
    "/oauth/token": (
        "client",
        "the client's own credentials: private_key_jwt, or a secret on DEV/TEST",
    ),
    "/.well-known/jwks.json": (
        "public",
        "public keys, so providers can verify assertions and seals",
    ),
    "/healthz": ("public", "liveness for load balancers; says nothing else"),
    "/readyz": (
        "public",
        "readiness for load balancers: database, log and registry reachable, not draining",
    ),
    "/metrics": ("public", "Prometheus counters; no personal data, tokens or secrets (§2)"),
}
"""Every address the bus serves itself (a key ending in ``/`` is a prefix), with the
authentication it asks for and why. A test fails on a bus address not listed here."""

_EXACT = frozenset(k for k in ROUTES if not k.endswith("/"))
_PREFIXES = tuple(k for k in ROUTES if k.endswith("/"))


def _is_bus_path(path: str) -> bool:
    return path.startswith(_PREFIXES) or path in _EXACT
