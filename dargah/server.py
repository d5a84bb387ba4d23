"""Composing the parts into one ASGI application (served by :mod:`dargah.http`)."""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from dargah.core.settings import Settings
from dargah.web.limits import limit_body

PARTS = ("bus", "registry", "console", "portal", "sandbox")
PAGE_BODY_LIMIT = 64 * 1024  # the portal's and dashboard's forms
CONSOLE_BODY_LIMIT = 4 * 1024 * 1024  # OpenAPI documents and catalogue files up to 2 MB
API_BODY_LIMIT = 64 * 1024 * 1024  # catalogue imports through the management API
ASGIApp = Callable[..., Awaitable[None]]
_LOOPBACK = ("127.0.0.1", "::1", "localhost")

if TYPE_CHECKING:
    from dargah.http.server import Site

log = logging.getLogger("dargah")


def build_app(settings: Settings, parts: Iterable[str]) -> Any:
    """The ASGI app for ``parts`` (bus, registry, console, portal) of the instance in ``settings``."""
    from dargah.registry.instance import open_instance

    chosen = set(parts)
    if "sandbox" in chosen:
        if chosen != {"sandbox"}:
            raise ValueError(
                "the sandbox agencies are outside agencies: serve them in a process of their own "
                "(dargah serve sandbox --port P), or use dargah demo"
            )
        return _sandbox_app(settings)
    engine, info, _token = open_instance(settings)
    fallback: Any = None
    if chosen & {"registry", "console", "portal"}:
        from dargah.console.api import build_management_app

        fallback = limit_body(build_management_app(settings, engine), API_BODY_LIMIT)
    if "portal" in chosen:
        from dargah.oversight.web.app import with_dashboard
        from dargah.portal.app import build_portal

        portal = build_portal(engine, settings, sandbox=info.sandbox)
        fallback = _by_prefix(fallback, limit_body(with_dashboard(portal, engine), PAGE_BODY_LIMIT))
    if "console" in chosen:
        from dargah.console.web.app import build_console

        pages = build_console(engine, fallback.state, settings.session_hours)
        fallback = _by_prefix(fallback, limit_body(pages, CONSOLE_BODY_LIMIT), prefix="/console")
    if "bus" in chosen:
        from dargah.bus.app import BusApp
        from dargah.bus.runtime import BusRuntime
        from dargah.oversight.daily import DailySnapshots

        rt = BusRuntime(settings, engine)
        if fallback is not None:
            fallback.state.health = rt.health  # the status API shows this process's probes
        daily = DailySnapshots(engine)

        async def start_daily() -> None:
            daily.start()

        return BusApp(rt, fallback, on_startup=[start_daily], on_shutdown=[daily.stop])
    return fallback


def site_for(settings: Settings, app: Any, *, reuse_port: bool = False) -> Site:
    """Where and how ``dargah serve`` listens: TLS when a certificate is configured, the
    deadlines, and the client-certificate header of trusted proxies."""
    from dargah.http.framing import Limits
    from dargah.http.server import Site
    from dargah.http.tls import ServerTls

    tls = None
    if settings.tls_cert_file or settings.tls_key_file:
        if not (settings.tls_cert_file and settings.tls_key_file):
            raise ValueError("set both DARGAH_TLS_CERT_FILE and DARGAH_TLS_KEY_FILE")
        tls = ServerTls(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file)
    elif settings.host not in _LOOPBACK:
        log.warning(
            "serving plain HTTP on %s: set DARGAH_TLS_CERT_FILE and DARGAH_TLS_KEY_FILE unless "
            "a load balancer in front terminates TLS",
            settings.host,
        )
    limits = Limits(settings.idle_timeout, settings.header_timeout, settings.body_timeout)
    return Site(
        app,
        settings.host,
        settings.port,
        reuse_port=reuse_port,
        tls=tls,
        limits=limits,
        cert_header=settings.client_cert_header,
        is_trusted_proxy=trusted_proxy_check(
            c.strip() for c in settings.trusted_proxies.split(",") if c.strip()
        ),
    )


def trusted_proxy_check(cidrs: Iterable[str]) -> Callable[[str], bool] | None:
    """A test of a peer address against ``cidrs``; None when there are none."""
    networks = [ipaddress.ip_network(c, strict=False) for c in cidrs]
    if not networks:
        return None

    def trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in n for n in networks)

    return trusted


def _by_prefix(api: Any, other: Any, prefix: str = "") -> Any:
    """With no ``prefix``: ``/api/…`` to the management API, every other address to ``other``
    (the portal). With one: ``prefix`` and ``prefix/…`` to ``other`` (the console's pages),
    everything else as before."""

    def wanted(path: str) -> bool:
        if prefix:
            return path == prefix or path.startswith(prefix + "/")
        return not path.startswith("/api/")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and wanted(scope["path"]):
            await other(scope, receive, send)
        else:
            await api(scope, receive, send)

    app.state = api.state  # type: ignore[attr-defined]
    return app


def _sandbox_app(settings: Settings) -> Any:
    """The sandbox agencies alone, verifying the assertions of the bus at DARGAH_PUBLIC_URL."""
    from dargah.sandbox.apps import build_sandbox_app
    from dargah.sandbox.citizens import generate_citizens

    bus_url = settings.public_url or "http://127.0.0.1:8000"
    return build_sandbox_app(settings.instance, bus_url, generate_citizens())


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for noisy in ("httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
