"""The dashboard's own static files: fingerprinted addresses, a year's caching, inlined CSS.

Pages refer to ``/dashboard/static/<file>?v=<content hash>`` (:func:`asset_url`); a request
carrying the file's current hash may be kept a year (``immutable``), any other must be
revalidated. The stylesheet is small and read once: pages carry it inline (:func:`inline_css`),
so nothing stands between the HTML and the first paint.
"""

from __future__ import annotations

import hashlib
import os
from functools import cache
from pathlib import Path
from typing import Any

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC = Path(__file__).parent / "static"
YEAR = "public, max-age=31536000, immutable"
REVALIDATE = "public, max-age=0, must-revalidate"


@cache
def _fingerprint(name: str) -> str:
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]


def asset_url(name: str) -> str:
    """``/dashboard/static/<name>?v=<hash>``: a new address whenever the file changes."""
    return f"/dashboard/static/{name}?v={_fingerprint(name)}"


@cache
def inline_css() -> str:
    """The dashboard's stylesheet, with its font addresses fingerprinted, for a <style>."""
    css = (STATIC / "dashboard.css").read_text(encoding="utf-8")
    for font in ("Vazirmatn-Regular.woff2", "Vazirmatn-Bold.woff2"):
        css = css.replace(f"url(fonts/{font})", f"url({asset_url('fonts/' + font)})")
    return css


class DashboardStatic(StaticFiles):
    """Starlette's static files, with a year's caching for addresses carrying the right hash."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["cache-control"] = REVALIDATE
        query = scope.get("query_string", b"").decode("latin-1")
        name = Path(full_path).resolve().relative_to(STATIC.resolve()).as_posix()
        if query == f"v={_fingerprint(name)}":
            response.headers["cache-control"] = YEAR
        return response


def static_app() -> Any:
    return DashboardStatic(directory=STATIC)
