"""The public status page of the bus, at ``/status`` (HTML) and ``/status.json``.

Authentication: none; everyone sees the same truth as the operator: each agency's and
service's state, 90 days of daily uptime and the incidents with their updates (never the
operators' notes). Measured at most every :data:`REFRESH_SECONDS` and shared by all
requests, so that a crowd looking at it during an outage costs one query round.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from dargah.oversight.uptime import public_status
from dargah.oversight.web.app import env
from dargah.store.db import READ_ONLY
from dargah.web.pages import render
from dargah.web.routes import page_route

REFRESH_SECONDS = 10.0
STATE_FA = {"up": "برقرار", "down": "قطع"}


def bar_colour(uptime: float | None) -> str:
    if uptime is None:
        return "#d9dde1"
    if uptime >= 99.9:
        return "#1e7b45"
    if uptime >= 99.0:
        return "#9a6b00"
    return "#b02a37"


class StatusCache:
    def __init__(self, engine: Engine, refresh: float = REFRESH_SECONDS) -> None:
        self.engine = engine
        self.refresh = refresh
        self._lock = threading.Lock()
        self._at = 0.0
        self._data: dict[str, Any] | None = None

    def get(self) -> dict[str, Any]:
        with self._lock:
            if self._data is not None and time.monotonic() - self._at < self.refresh:
                return self._data
            with self.engine.connect().execution_options(**READ_ONLY) as conn, conn.begin():
                self._data = public_status(conn, datetime.now(UTC))
            self._at = time.monotonic()
            return self._data


def build_status_page(engine: Engine, refresh: float = REFRESH_SECONDS) -> Starlette:
    cache = StatusCache(engine, refresh)

    def page(request: Request) -> Response:
        data = cache.get()
        return render(
            env,
            "status_public.html",
            s=data,
            state_fa=STATE_FA,
            colour=bar_colour,
            now=data["generated_at"],
        )

    def as_json(request: Request) -> Response:
        return Response(
            json.dumps(cache.get(), ensure_ascii=False),
            media_type="application/json",
            headers={"Cache-Control": "public, max-age=10"},
        )

    return Starlette(
        routes=[
            page_route("/status", page, auth="public"),
            page_route("/status.json", as_json, auth="public"),
        ]
    )
