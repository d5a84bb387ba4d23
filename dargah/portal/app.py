"""The portal's pages (stable addresses of platform.md) composed into one Starlette app.

Each route states who may open it (``public``, ``citizen`` or ``sandbox``); see
:func:`dargah.portal.context.page_route`. The catalogue pages are here; sign-in, applying,
a citizen's own pages and the sandbox outbox have modules of their own.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select
from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount

from dargah.core.settings import Settings
from dargah.oversight.levels import assess
from dargah.portal import applying, me, outbox, signin
from dargah.portal.catalogue import LIFE_EVENTS, Catalogue
from dargah.portal.context import PortalContext, page_route
from dargah.portal.source_health import SourceHealth
from dargah.portal.watch import Refresher, Watcher
from dargah.store.db import READ_ONLY
from dargah.store.people_tables import ratings
from dargah.web.assets import favicon
from dargah.web.pages import static_files

log = logging.getLogger("dargah.portal")
RELOAD_SECONDS = 30.0
_SERVICE_ID = re.compile(r"[0-9]{11}")


class CatalogueHolder:
    """The catalogue in memory, with each service's verified level and citizens' satisfaction.

    Rebuilt every 30 s (imports show up within that) in a background thread: a page never
    waits for a rebuild, except the very first one.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._current: Catalogue | None = None
        self._measures: dict[str, dict[str, Any]] | None = None
        self._loaded = 0.0
        self._lock = threading.Lock()
        self._refreshing = False

    def _rebuild(self) -> None:
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            catalogue = Catalogue(conn)
        measures = self._measure()
        with self._lock:
            self._current, self._measures = catalogue, measures
            self._loaded = time.monotonic()
            self._refreshing = False

    def _fresh(self) -> tuple[Catalogue, dict[str, dict[str, Any]]]:
        with self._lock:
            current, measures = self._current, self._measures
            stale = time.monotonic() - self._loaded > RELOAD_SECONDS
            start = stale and current is not None and not self._refreshing
            if start:
                self._refreshing = True
        if current is None or measures is None:
            self._rebuild()
            return self._fresh()
        if start:
            threading.Thread(target=self._rebuild_quietly, daemon=True).start()
        return current, measures

    def _rebuild_quietly(self) -> None:
        try:
            self._rebuild()
        except Exception:  # the pages keep the catalogue they have; the next one retries
            log.exception("could not reload the catalogue")
            with self._lock:
                self._refreshing = False

    def get(self) -> Catalogue:
        return self._fresh()[0]

    def measures(self, service_id: str) -> dict[str, Any]:
        """``verified_level`` and ``satisfaction`` (mean score, count) of one service."""
        return self._fresh()[1].get(service_id, {})

    def _measure(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            try:
                for sid, verdict in assess(conn, datetime.now(UTC)).items():
                    out[sid] = {"verified_level": verdict.verified_level}
            except Exception:  # the page still shows the card; the level says "not measured"
                log.exception("could not assess the catalogue")
            q = select(ratings.c.service_id, func.avg(ratings.c.score), func.count()).group_by(
                ratings.c.service_id
            )
            for sid, mean, n in conn.execute(q):
                out.setdefault(sid, {})["satisfaction"] = (float(mean), int(n))
        return out


SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


def _personal(scope: Any) -> bool:
    """A signed-in citizen's request, or a sign-in page: never to be kept by a cache (static
    files are the same for everyone, whoever asks)."""
    if scope["path"].startswith(("/static/", "/favicon.ico")):
        return False
    if scope["path"].startswith(("/login", "/logout", "/me/")) or "/apply" in scope["path"]:
        return True
    return any(name == b"cookie" and b"dargah_portal=" in value for name, value in scope["headers"])


def server_timing(app: Any) -> Any:
    """Adds ``Server-Timing: app;dur=…`` (milliseconds until the response starts), the security
    headers, and ``Cache-Control: no-store`` on a citizen's own pages."""

    async def timed(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        personal = _personal(scope)

        async def send_timed(message: Any) -> None:
            if message["type"] == "http.response.start":
                dur = (time.perf_counter() - started) * 1000
                headers = list(message.get("headers", []))
                headers.append((b"server-timing", f"app;dur={dur:.2f}".encode()))
                headers.extend(SECURITY_HEADERS)
                if personal:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_timed)

    return timed


def build_portal(
    engine: Engine, settings: Settings | None = None, sandbox: bool = False
) -> Starlette:
    """The portal's pages; ``sandbox`` adds the SMS outbox (DEV and TEST instances only)."""
    settings = settings or Settings()
    holder = CatalogueHolder(engine)
    health = SourceHealth(engine)
    ctx = PortalContext.build(engine, settings, sandbox, holder)
    refresh = Refresher(ctx)
    watcher = Watcher(ctx, refresh, settings.portal_watch_seconds)

    def home(request: Request) -> Response:
        cat = holder.get()
        return ctx.page(
            request,
            "home.html",
            clusters=cat.clusters(),
            life_events=LIFE_EVENTS,
            agencies=cat.agencies(),
            q="",
        )

    def search(request: Request) -> Response:
        cat = holder.get()
        q = request.query_params.get("q", "")[:200]
        cluster = request.query_params.get("cluster")
        life_event = request.query_params.get("life_event")
        agency = request.query_params.get("agency")
        if cluster or life_event or agency:
            found = cat.by(cluster=cluster, life_event=life_event, agency=agency)
            results = [
                {
                    "service_id": s["service_id"],
                    "agency": s["agency_name"],
                    "title": s.get("title_fa") or s.get("title_en"),
                }
                for s in found
            ]
            heading = LIFE_EVENTS.get(life_event or "", cluster or "") or (
                f"خدمات {found[0]['agency_name']}" if found else "خدمتی یافت نشد"
            )
        else:
            results = [
                {"service_id": e.service_id, "title": e.title, "agency": e.agency}
                for e, _score in cat.index.search(q)
            ]
            heading = f"نتیجه جست‌وجو برای «{q}»" if q.strip() else "عبارتی برای جست‌وجو بنویسید"
        return ctx.page(request, "results.html", results=results, heading=heading, q=q)

    def service(request: Request) -> Response:
        sid = str(request.path_params["service_id"])
        s = holder.get().services.get(sid) if _SERVICE_ID.fullmatch(sid) else None
        if s is None:
            return ctx.error(
                request, 404, "خدمت یافت نشد", "خدمتی با این شناسه در فهرست ملی خدمات نیست."
            )
        sources = [ctx.sources.service(x) for x in s.get("data_source_ids", [])]
        documents = [d for d in s.get("documents") or [] if isinstance(d, dict)]
        by_citizen = [d for d in documents if d.get("source") in (None, "", "citizen")]
        return ctx.page(
            request,
            "service.html",
            s=s,
            title=s.get("title_fa") or s.get("title_en"),
            measures=holder.measures(sid),
            sources=[x for x in sources if x is not None],
            can_apply=applying.can_apply(s),
            life_event_names=LIFE_EVENTS,
            source_notice=health.notice(s),
            bring=[d.get("name_fa") or d.get("name_en") or "" for d in by_citizen],
            fetched=[d for d in documents if d not in by_citizen],
        )

    def icon(request: Request) -> Response:
        return favicon()

    async def not_found(request: Request, exc: Exception) -> Response:
        return ctx.error(request, 404, "صفحه یافت نشد", "این نشانی در درگاه نیست.")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return ctx.error(
            request, 405, "این کار ممکن نیست", "این نشانی این نوع درخواست را نمی‌پذیرد."
        )

    async def failed(request: Request, exc: Exception) -> Response:
        log.exception("portal page failed", exc_info=exc)
        return ctx.error(
            request,
            500,
            "خطایی رخ داد",
            "متأسفیم؛ مشکلی پیش آمد. چند لحظه دیگر دوباره امتحان کنید.",
        )

    app = Starlette(
        routes=[
            page_route("/", home, auth="public"),
            page_route("/search", search, auth="public"),
            page_route("/services/{service_id}", service, auth="public"),
            *signin.routes(ctx),
            *applying.routes(ctx),
            *me.routes(ctx, refresh),
            *outbox.routes(ctx),
            page_route("/favicon.ico", icon, auth="public"),
            Mount("/static", static_files(), name="static"),
        ],
        exception_handlers={404: not_found, 405: not_allowed, 500: failed, Exception: failed},
    )
    app.add_middleware(_ServerTiming, watcher=watcher)
    # Pages and static files compressed (gzip, level 6) when the browser takes it; the bus's
    # own calls never pass here.
    app.add_middleware(GZipMiddleware, minimum_size=500, compresslevel=6)
    app.state.watcher = watcher
    return app


class _ServerTiming:
    """Starlette middleware form of :func:`server_timing`; the first request starts the
    portal's watcher (news told to citizens, see :mod:`dargah.portal.watch`)."""

    def __init__(self, app: Any, watcher: Watcher) -> None:
        self.app = server_timing(app)
        self.watcher = watcher
        self.started = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not self.started and scope["type"] == "http":
            self.started = True
            self.watcher.start()
        await self.app(scope, receive, send)
