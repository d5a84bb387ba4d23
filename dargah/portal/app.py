"""The portal's pages (stable addresses of platform.md): home, search, a service's page.

Authentication: none; these pages show the public national catalogue only.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route

from dargah.portal.catalogue import LIFE_EVENTS, Catalogue
from dargah.store.db import READ_ONLY
from dargah.web.pages import environment, static_files

log = logging.getLogger("dargah.portal")
RELOAD_SECONDS = 30.0
_SERVICE_ID = re.compile(r"[0-9]{11}")
_CHANNELS = {
    "online": "برخط",
    "in_person": "حضوری",
    "phone": "تلفنی",
    "mail": "پستی",
    "kiosk": "باجه",
    "app": "برنامه همراه",
}

_env = environment(Path(__file__).parent / "templates")
_env.filters["channel"] = lambda c: _CHANNELS.get(c, c)


def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(name).render(**context), status_code=status)


class CatalogueHolder:
    """The catalogue in memory, rebuilt at most every 30 s (imports show up within that)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._current: Catalogue | None = None
        self._loaded = 0.0
        self._lock = threading.Lock()

    def get(self) -> Catalogue:
        with self._lock:
            if self._current is None or time.monotonic() - self._loaded > RELOAD_SECONDS:
                with self.engine.connect().execution_options(**READ_ONLY) as conn:
                    self._current = Catalogue(conn)
                self._loaded = time.monotonic()
            return self._current


def build_portal(engine: Engine) -> Starlette:
    holder = CatalogueHolder(engine)

    def home(request: Request) -> Response:
        cat = holder.get()
        return page("home.html", clusters=cat.clusters(), life_events=LIFE_EVENTS, q="")

    def search(request: Request) -> Response:
        cat = holder.get()
        q = request.query_params.get("q", "")[:200]
        cluster = request.query_params.get("cluster")
        life_event = request.query_params.get("life_event")
        if cluster or life_event:
            found = cat.by(cluster=cluster, life_event=life_event)
            results = [
                {
                    "service_id": s["service_id"],
                    "agency": s["agency_name"],
                    "title": s.get("title_fa") or s.get("title_en"),
                }
                for s in found
            ]
            heading = LIFE_EVENTS.get(life_event or "", cluster or "")
        else:
            results = [
                {"service_id": e.service_id, "title": e.title, "agency": e.agency}
                for e, _score in cat.index.search(q)
            ]
            heading = f"نتیجه جست‌وجو برای «{q}»" if q.strip() else "عبارتی برای جست‌وجو بنویسید"
        return page("results.html", results=results, heading=heading, q=q)

    def service(request: Request) -> Response:
        sid = str(request.path_params["service_id"])
        s = holder.get().services.get(sid) if _SERVICE_ID.fullmatch(sid) else None
        if s is None:
            return page(
                "error.html",
                404,
                heading="خدمت یافت نشد",
                message="خدمتی با این شناسه در فهرست ملی خدمات نیست.",
            )
        return page("service.html", s=s, title=s.get("title_fa") or s.get("title_en"))

    async def not_found(request: Request, exc: Exception) -> Response:
        return page("error.html", 404, heading="صفحه یافت نشد", message="این نشانی در درگاه نیست.")

    async def failed(request: Request, exc: Exception) -> Response:
        log.exception("portal page failed", exc_info=exc)
        return page(
            "error.html",
            500,
            heading="خطایی رخ داد",
            message="متأسفیم؛ مشکلی پیش آمد. چند لحظه دیگر دوباره امتحان کنید.",
        )

    return Starlette(
        routes=[
            Route("/", home),
            Route("/search", search),
            Route("/services/{service_id}", service),
            Mount("/static", static_files(), name="static"),
        ],
        exception_handlers={404: not_found, 500: failed, Exception: failed},
    )
