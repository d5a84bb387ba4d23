"""The public dashboard's pages and downloads (Starlette), mounted at ``/dashboard``.

Authentication: none; everything shown is public by design (smartness.md: the public sees
what citizens experience and what agencies claim). Every input is a path or query value;
anything unknown answers a Persian 404 page, never a 500.

- ``/dashboard``: the nation; ``?period=1404`` chooses the reported period (and the window),
  ``?page=N`` the page of violations (ten a page; every one is in the exports).
- ``/dashboard/agencies/{member id or legal ID}``: one agency (``?page=``, ``?services_page=``).
- ``/dashboard/export/{table}.{csv|xlsx}`` (``?agency=…`` for an agency's tables).
- ``/dashboard/report.pdf?agency=…``: the agency's report.

The overview is measured at most every 30 s per period and shared by all requests. Pages carry
their own small stylesheet inline and draw their charts after the first paint (``dashboard.js``
loads Chart.js once a chart is on screen); responses are gzip-compressed.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount

from dargah.core.clock import utc_now
from dargah.oversight.overview import NATION, Overview, build_overview
from dargah.oversight.web import tables
from dargah.oversight.web.assets import asset_url, inline_css, static_app
from dargah.oversight.web.format import cell_text, kpi_value, percent
from dargah.oversight.web.report_pdf import agency_report
from dargah.store.db import READ_ONLY
from dargah.web.pages import environment, render
from dargah.web.routes import page_route

log = logging.getLogger("dargah.oversight.web")
HERE = Path(__file__).parent
REFRESH_SECONDS = 30.0
VIOLATIONS_PER_PAGE = 10
SERVICES_PER_PAGE = 50
_PERIOD = re.compile(r"^[0-9۰-۹A-Za-z\- /]{1,20}$")
_KEY = re.compile(r"^[A-Za-z0-9/]{1,64}$")
MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

env = environment(HERE / "templates")
env.filters["percent"] = percent
env.filters["kpi_value"] = kpi_value
env.filters["cell"] = cell_text
env.globals["standing_fa"] = tables.STANDING_FA
env.globals["level_fa"] = tables.LEVEL_FA
env.globals["css"] = inline_css()
env.globals["asset"] = asset_url


class OverviewCache:
    """The latest overview of each period, measured again after ``refresh`` seconds.

    A stale overview is served while a background thread measures the next one, so no page
    waits for a measurement but the first of each period. ``refresh=0`` measures on every
    request (tests, and the cold figures of the benchmark).
    """

    def __init__(self, engine: Engine, refresh: float = REFRESH_SECONDS) -> None:
        self.engine = engine
        self.refresh = refresh
        self._lock = threading.Lock()
        self._cache: dict[str | None, tuple[float, Overview]] = {}
        self._measuring: set[str | None] = set()

    def _measure(self, period: str | None) -> Overview:
        with self.engine.connect().execution_options(**READ_ONLY) as conn, conn.begin():
            ov = build_overview(conn, utc_now(), period)
        with self._lock:
            if len(self._cache) > 16:
                self._cache.clear()
            self._cache[period] = (time.monotonic(), ov)
            self._measuring.discard(period)
        return ov

    def _measure_quietly(self, period: str | None) -> None:
        try:
            self._measure(period)
        except Exception:  # the stale overview stays; the next request tries again
            log.exception("could not measure the overview")
            with self._lock:
                self._measuring.discard(period)

    def get(self, period: str | None) -> Overview:
        with self._lock:
            hit = self._cache.get(period)
            fresh = hit is not None and time.monotonic() - hit[0] < self.refresh
            start = hit is not None and not fresh and self.refresh > 0
            start = start and period not in self._measuring
            if start:
                self._measuring.add(period)
        if hit is not None and (fresh or self.refresh > 0):
            if start:
                threading.Thread(target=self._measure_quietly, args=(period,), daemon=True).start()
            return hit[1]
        return self._measure(period)


class ReportCache:
    """Agency reports (PDF) made once per overview, one at a time: anyone may ask for them, and
    making one costs about half a second of CPU, so many requests must not cost many."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made: dict[str, tuple[Overview, bytes]] = {}

    def get(self, ov: Overview, scope: str, make: Any) -> bytes:
        with self._lock:  # one report made at a time; the others wait and take it
            hit = self._made.get(scope)
            if hit is not None and hit[0] is ov:
                return hit[1]
            pdf = bytes(make())
            if len(self._made) > 64:
                self._made.clear()
            self._made[scope] = (ov, pdf)
            return pdf


def _period(request: Request) -> str | None:
    raw = request.query_params.get("period", "").strip()
    return raw if raw and _PERIOD.fullmatch(raw) else None


def _page_of(request: Request, param: str) -> int:
    raw = request.query_params.get(param, "")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 7 else 1


def _paged(rows: list[Any], request: Request, param: str, size: int) -> dict[str, Any]:
    """One page of ``rows`` (``?<param>=N``, out of range: the nearest page) with the
    addresses of the pages before and after it, keeping the period and the other list's page
    when they are valid (the national page is cached by period and page: nothing else may
    change it)."""
    pages = max(1, -(-len(rows) // size))
    page = min(max(1, _page_of(request, param)), pages)
    period = _period(request)
    kept = {"period": period} if period else {}
    for other in ("page", "services_page"):
        if other != param and _page_of(request, other) > 1:
            kept[other] = str(_page_of(request, other))
    anchor = "#violations-h" if param == "page" else "#services-h"

    def link(n: int) -> str | None:
        if not 1 <= n <= pages:
            return None
        query = urlencode(
            {**kept, param: str(n)} if n > 1 else {k: v for k, v in kept.items() if k != param}
        )
        return request.url.path + ("?" + query if query else "") + anchor

    first = (page - 1) * size
    return {
        "rows": rows[first : first + size],
        "page": page,
        "pages": pages,
        "size": size,
        "first": first,
        "prev": link(page - 1),
        "next": link(page + 1),
    }


def _json(data: Any) -> str:
    """JSON safe inside a <script> element."""
    text = json.dumps(data, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _chart_data(ov: Overview, scope: str) -> dict[str, Any]:
    s = ov.summary(scope)
    return {
        "levels": {
            "labels": list(tables.LEVEL_FA),
            "verified": s["verified_levels"],
            "declared": s["declared_levels"],
        },
        "plan": {
            "years": [str(t["year"]) for t in s["progress"]["targets"]],
            "targets": [t["target"] for t in s["progress"]["targets"]],
            "smart": s["smart"],
            "expected": s["progress"]["expected"],
            "projection": s["progress"]["projection"],
            "history": [[d.isoformat(), v] for d, v in ov.history(scope)],
        },
        "satisfaction": ov.satisfaction_by_month(scope),
    }


def _not_found(what: str) -> HTMLResponse:
    return render(env, "dashboard_missing.html", 404, what=what)


def build_dashboard(engine: Engine, refresh: float = REFRESH_SECONDS) -> Starlette:
    cache = OverviewCache(engine, refresh)
    rendered: dict[tuple[str | None, int], tuple[Overview, bytes]] = {}  # national, per overview
    reports = ReportCache()

    def national(request: Request) -> Response:
        period = _period(request)
        ov = cache.get(period)
        key = (period, _page_of(request, "page"))
        hit = rendered.get(key)
        if hit is not None and hit[0] is ov:
            return HTMLResponse(hit[1])
        violations = tables.violations(ov)
        chart = _chart_data(ov, NATION)
        page = render(
            env,
            "dashboard.html",
            ov=ov,
            s=ov.summary(NATION),
            agencies=tables.agencies(ov),
            violations=violations,
            pg=_paged(violations.rows, request, "page", VIOLATIONS_PER_PAGE),
            c=chart,
            chart=_json(chart),
            period=period,
            query=f"?period={period}" if period else "",
        )
        if len(rendered) > 64:
            rendered.clear()
        rendered[key] = (ov, bytes(page.body))
        return page

    def agency(request: Request) -> Response:
        key = request.path_params["key"].strip("/")
        ov = cache.get(_period(request))
        scope = ov.find_agency(key) if _KEY.fullmatch(key) else None
        if scope is None:
            return _not_found("دستگاهی با این شناسه یافت نشد")
        info = ov.agencies_by_id[scope]
        services, violations = tables.services(ov, scope), tables.violations(ov, scope)
        chart = _chart_data(ov, scope)
        return render(
            env,
            "agency.html",
            ov=ov,
            a=info,
            s=ov.summary(scope),
            services=services,
            spg=_paged(services.rows, request, "services_page", SERVICES_PER_PAGE),
            violations=violations,
            pg=_paged(violations.rows, request, "page", VIOLATIONS_PER_PAGE),
            c=chart,
            chart=_json(chart),
            query=f"?agency={info['legal_id'] or scope}",
        )

    def export(request: Request) -> Response:
        name, fmt = request.path_params["name"], request.path_params["fmt"]
        ov = cache.get(_period(request))
        scope: str | None = NATION
        key = request.query_params.get("agency")
        if key:
            scope = ov.find_agency(key) if _KEY.fullmatch(key) else None
        table = tables.table(ov, name, scope) if scope and fmt in MEDIA else None
        if table is None or scope is None:
            return _not_found("چنین جدولی نیست")
        body = table.csv_bytes() if fmt == "csv" else table.xlsx_bytes()
        suffix = "" if scope == NATION else "-" + ov.agencies_by_id[scope]["legal_id"]
        return Response(
            body,
            media_type=MEDIA[fmt],
            headers={"Content-Disposition": f'attachment; filename="{name}{suffix}.{fmt}"'},
        )

    def report(request: Request) -> Response:
        key = request.query_params.get("agency", "")
        ov = cache.get(None)
        scope = ov.find_agency(key) if _KEY.fullmatch(key) else None
        if scope is None:
            return _not_found("دستگاهی با این شناسه یافت نشد")
        info = ov.agencies_by_id[scope]
        pdf = reports.get(ov, scope, lambda: agency_report(ov, scope, info, ov.now))
        return Response(
            pdf,
            media_type="application/pdf",
            headers={
                "Content-Disposition": f'attachment; filename="report-{info["legal_id"]}.pdf"'
            },
        )

    async def missing(request: Request, exc: Exception) -> Response:
        return _not_found("این نشانی در داشبورد نیست")

    return Starlette(
        middleware=[Middleware(GZipMiddleware, minimum_size=800)],
        exception_handlers={404: missing},
        routes=[
            page_route("/dashboard", national, auth="public"),
            page_route("/dashboard/", national, auth="public"),
            page_route("/dashboard/agencies/{key:path}", agency, auth="public"),
            page_route("/dashboard/export/{name}.{fmt}", export, auth="public"),
            page_route("/dashboard/report.pdf", report, auth="public"),
            Mount("/dashboard/static", static_app(), name="static"),
        ],
    )


def with_dashboard(portal: Any, engine: Engine) -> Any:
    """``/dashboard`` and ``/dashboard/…`` to the dashboard, ``/status`` and ``/status.json`` to
    the public status page, every other address to ``portal``."""
    from dargah.oversight.web.status_page import build_status_page

    dashboard = build_dashboard(engine)
    status = build_status_page(engine)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == "/dashboard" or path.startswith("/dashboard/"):
            await dashboard(scope, receive, send)
        elif path in ("/status", "/status.json"):
            await status(scope, receive, send)
        else:
            await portal(scope, receive, send)

    return app
