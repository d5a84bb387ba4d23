"""Running ASGI applications on :mod:`dargah.http.protocol`: lifespan, graceful stop, workers.

:func:`serve` runs one or more applications (each on its own address) in one
event loop until SIGINT or SIGTERM, then drains (for ``drain`` seconds, if any:
each site's ``on_drain`` is called, so that its readiness check fails and load
balancers move away, while it goes on serving), stops accepting, lets the
requests in flight finish (up to ``grace`` seconds) and runs the lifespan
shutdown, which is where the bus seals its message log. A second signal ends
the drain at once. An address may speak TLS (:mod:`dargah.http.tls`): its
certificate is loaded again on SIGHUP and when its files change.
:func:`run_workers` starts N processes that share one port (SO_REUSEPORT) and
restarts any that dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvloop

from dargah.http import tls as tls_module
from dargah.http.framing import Limits
from dargah.http.protocol import ASGIApp, HttpProtocol, ServerState
from dargah.http.tls import ServerTls

CERT_CHECK_SECONDS = 5.0

log = logging.getLogger("dargah.http")


@dataclass
class Site:
    """One application on one address."""

    app: ASGIApp
    host: str
    port: int
    lifespan: bool = True
    reuse_port: bool = False
    name: str = "dargah"
    on_drain: Callable[[], None] | None = None
    tls: ServerTls | None = None
    limits: Limits = field(default_factory=Limits)
    # RFC 9440 Client-Cert from a TLS-terminating proxy: its header name, and who may send it.
    cert_header: str = ""
    is_trusted_proxy: Callable[[str], bool] | None = None


class _Lifespan:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.supported = True

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        try:
            await self.app(scope, self.inbox.get, self.outbox.put)
        except Exception:
            self.supported = False
            log.debug("the application does not take lifespan events", exc_info=True)
        finally:
            await self.outbox.put({"type": "lifespan.ended"})

    async def startup(self) -> None:
        self.task = asyncio.create_task(self._main())
        await self.inbox.put({"type": "lifespan.startup"})
        answer = await self.outbox.get()
        if answer["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"the application failed to start: {answer.get('message', '')}")

    async def shutdown(self) -> None:
        if not self.supported or self.task is None or self.task.done():
            return
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self.outbox.get()


async def _serve(
    sites: list[Site], grace: float, started: asyncio.Event | None, drain: float = 0.0
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    watcher: asyncio.Task[None] | None = None
    if any(site.tls is not None for site in sites):
        loop.add_signal_handler(signal.SIGHUP, tls_module.reload_all)
        watcher = asyncio.create_task(_watch_certificates())
    lifespans: list[_Lifespan] = []
    servers: list[tuple[asyncio.Server, ServerState]] = []
    try:
        for site in sites:
            if site.lifespan:
                ls = _Lifespan(site.app)
                await ls.startup()
                lifespans.append(ls)
            state = ServerState(
                site.app,
                site.host,
                site.port,
                site.limits,
                site.cert_header.encode("latin-1"),
                site.is_trusted_proxy,
            )
            server = await loop.create_server(
                functools.partial(HttpProtocol, state),
                site.host,
                site.port,
                reuse_port=site.reuse_port,
                backlog=2048,
                ssl=site.tls.context if site.tls is not None else None,
                ssl_handshake_timeout=site.limits.header if site.tls is not None else None,
            )
            servers.append((server, state))
            scheme = "https" if site.tls is not None else "http"
            log.info("%s listening on %s://%s:%d", site.name, scheme, site.host, site.port)
        # What start-up made lives as long as the process: keep the collector off it, and let it
        # run less often (a request makes hundreds of short-lived objects, none cyclic).
        gc.freeze()
        gc.set_threshold(20_000, 50, 100)
        if started is not None:
            started.set()
        await stop.wait()
        if drain > 0:
            await _drain(sites, drain, lambda: signals > 1)
    finally:
        if watcher is not None:
            watcher.cancel()
        for server, state in servers:
            state.closing = True
            server.close()
            for conn in list(state.connections):
                conn.shutdown()
        deadline = time.monotonic() + grace
        for _server, state in servers:
            while state.tasks and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        for ls in reversed(lifespans):
            try:
                await ls.shutdown()
            except Exception:
                log.exception("lifespan shutdown failed")


async def _drain(sites: list[Site], seconds: float, cut_short: Callable[[], bool]) -> None:
    log.info("draining for %g s before stopping", seconds)
    for site in sites:
        if site.on_drain is not None:
            site.on_drain()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not cut_short():
        await asyncio.sleep(0.05)


async def _watch_certificates() -> None:
    """Pick up a renewed certificate without a signal (a renewal tool that only writes files)."""
    while True:
        await asyncio.sleep(CERT_CHECK_SECONDS)
        tls_module.reload_all(only_changed=True)


def serve(sites: list[Site], *, grace: float = 10.0, drain: float = 0.0) -> None:
    """Serve until SIGINT or SIGTERM, drain for ``drain`` seconds, then stop gracefully."""
    uvloop.run(_serve(sites, grace, None, drain))


def run_workers(argv: list[str], workers: int, host: str, port: int) -> None:
    """Run ``workers`` copies of this command (with ``--reuse-port``) on one port; restart any that dies.

    SIGINT and SIGTERM are passed on to every worker, which stop gracefully.
    """
    with socket.socket() as probe:  # fail early and clearly when the port is taken
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.bind((host, port))
    stopping = False
    procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(slot: int) -> None:
        procs[slot] = subprocess.Popen(
            [sys.executable, "-P", "-m", "dargah.cli.main", *argv, "--reuse-port"]
        )

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for p in procs.values():
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signum)

    def on_reload(signum: int, _frame: Any) -> None:
        for p in procs.values():
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_reload)  # reload the TLS certificate in every worker
    for slot in range(workers):
        start(slot)
    restarts: dict[int, float] = {}
    while procs:
        time.sleep(0.2)
        for slot, p in list(procs.items()):
            if p.poll() is None:
                continue
            if stopping:
                del procs[slot]
                continue
            log.error("worker %d exited with %s; restarting it", p.pid, p.returncode)
            if time.monotonic() - restarts.get(slot, 0.0) < 1.0:
                time.sleep(1.0)
            restarts[slot] = time.monotonic()
            start(slot)
