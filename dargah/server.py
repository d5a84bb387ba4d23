"""Composing the parts into one ASGI application and running it with uvicorn."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from dargah.core.settings import Settings, settings_from_env

PARTS = ("bus", "registry", "console", "portal", "sandbox")
ASGIApp = Callable[..., Awaitable[None]]


def build_app(settings: Settings, parts: Iterable[str]) -> Any:
    """The ASGI app for ``parts`` (bus, registry, console, portal) of the instance in ``settings``."""
    from dargah.registry.instance import open_instance

    chosen = set(parts)
    engine, _info, _token = open_instance(settings)
    fallback: Any = None
    if chosen & {"registry", "console", "portal"}:
        from dargah.console.api import build_management_app

        fallback = build_management_app(settings, engine)
    if "bus" in chosen:
        from dargah.bus.app import BusApp
        from dargah.bus.runtime import BusRuntime

        return BusApp(BusRuntime(settings, engine), fallback)
    return fallback


def app_factory() -> Any:
    """For ``uvicorn --factory`` and worker processes: settings and parts from the environment."""
    settings = settings_from_env()
    parts = os.environ.get("DARGAH_PARTS", "bus,registry").split(",")
    return build_app(settings, parts)


def uvicorn_config(app: Any, settings: Settings, **extra: Any) -> Any:
    import uvicorn

    options: dict[str, Any] = {
        "host": settings.host, "port": settings.port, "loop": "uvloop", "http": "httptools",
        "lifespan": "on", "access_log": False, "log_level": settings.log_level,
        "server_header": False, "timeout_graceful_shutdown": 10,
        # Nothing reads the client address from proxy headers; parsing them costs per request.
        "proxy_headers": False,
    }
    options.update(extra)
    return uvicorn.Config(app, **options)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format='{"ts":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}',
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
