"""Static assets with fingerprints, long-lived caching, and the favicon.

Every page names a static file through :func:`asset_url`, which appends the first 12 hex
digits of the file's SHA-256 (``/static/app.css?v=3f2a…``). A request that carries the current
fingerprint is answered ``Cache-Control: public, max-age=31536000, immutable``: a browser keeps
the file for a year and never asks again, and a new version has a new address. A request
without it (or with an old one) is answered with a short lifetime, so a stale link is never
pinned for a year.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
IMMUTABLE = "public, max-age=31536000, immutable"
SHORT = "public, max-age=300"

_lock = threading.Lock()
_fingerprints: dict[str, str] = {}


def fingerprint(path: str) -> str:
    """The first 12 hex digits of the SHA-256 of ``static/<path>`` (computed once per process)."""
    with _lock:
        known = _fingerprints.get(path)
    if known is not None:
        return known
    digest = hashlib.sha256((STATIC_DIR / path).read_bytes()).hexdigest()[:12]
    with _lock:
        _fingerprints[path] = digest
    return digest


def asset_url(path: str) -> str:
    """``/static/<path>?v=<fingerprint>``, the address pages use for a static file."""
    return f"/static/{path}?v={fingerprint(path)}"


class FingerprintedStatic(StaticFiles):
    """The shared assets under ``/static/``, cached for a year when asked by fingerprint."""

    def file_response(
        self, full_path: Any, stat_result: Any, scope: Any, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        asked = _query_value(scope.get("query_string", b""), b"v")
        try:
            relative = Path(full_path).resolve().relative_to(STATIC_DIR.resolve()).as_posix()
            current = fingerprint(relative)
        except (ValueError, OSError):
            current = ""
        fresh = bool(asked) and asked == current.encode()
        response.headers["cache-control"] = IMMUTABLE if fresh else SHORT
        return response


def _query_value(query: bytes, name: bytes) -> bytes:
    for part in query.split(b"&"):
        key, _, value = part.partition(b"=")
        if key == name:
            return value[:64]
    return b""


def static_app() -> FingerprintedStatic:
    return FingerprintedStatic(directory=STATIC_DIR)


def favicon() -> Response:
    """``/favicon.ico``: browsers ask for it on every site whatever the page says."""
    response = FileResponse(STATIC_DIR / "favicon.ico", media_type="image/x-icon")
    response.headers["cache-control"] = "public, max-age=86400"
    return response
