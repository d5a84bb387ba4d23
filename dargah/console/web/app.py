"""The console's web application: every page under ``/console/``, each with its declared access.

``state`` is the management API's state, where the bus process puts its health probes
(``state.health``); the status page reads them from there.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dargah.console.web import (
    pages_auth,
    pages_catalogue,
    pages_coverage,
    pages_grants,
    pages_log,
    pages_oversight,
    pages_registry,
    pages_services,
    pages_status,
)
from dargah.console.web.guard import SESSION_TTL, error_page, log, page_route
from dargah.web.sessions import SessionStore

PREFIX = "/console"
MODULES = (
    pages_auth,
    pages_status,
    pages_log,
    pages_registry,
    pages_services,
    pages_catalogue,
    pages_grants,
    pages_coverage,
    pages_oversight,
)
UPLOADS = {**pages_services.UPLOADS, **pages_catalogue.UPLOADS}  # (path, post) -> largest form


def build_console(
    engine: Engine, state: Any = None, session_hours: float | None = None
) -> Starlette:
    """The console; sessions last ``session_hours`` (``DARGAH_SESSION_HOURS``), 8 by default."""
    ttl = timedelta(hours=session_hours) if session_hours else SESSION_TTL
    store = SessionStore(engine, "console", ttl=ttl)
    routes: list[Route] = [
        page_route(path, handler, store, engine, state, post, UPLOADS.get((path, post), 0))
        for module in MODULES
        for path, handler, post in module.PAGES
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_page(404, "این نشانی در پیشخوان نیست.")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return error_page(405, "این نشانی این نوع درخواست را نمی‌پذیرد.")

    async def failed(request: Request, exc: Exception) -> Response:
        log.exception("console failed", exc_info=exc)
        return error_page(500, "متأسفیم؛ مشکلی پیش آمد. چند لحظه دیگر دوباره امتحان کنید.")

    return Starlette(
        routes=routes,
        exception_handlers={404: not_found, 405: not_allowed, 500: failed, Exception: failed},
    )
