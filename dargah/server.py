"""Composing the parts into one ASGI application (served by :mod:`dargah.http`)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from dargah.core.settings import Settings

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


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format='{"ts":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}',
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
