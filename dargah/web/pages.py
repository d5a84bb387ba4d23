"""Rendering pages: a Jinja environment over the shared layout, with Persian filters."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from dargah.core.jalali import format_date, format_datetime
from dargah.core.persian import to_persian_digits

WEB_DIR = Path(__file__).parent
STATIC_DIR = WEB_DIR / "static"


def _parse(moment: Any) -> datetime | None:
    if isinstance(moment, datetime):
        return moment
    if not moment:
        return None
    try:
        return datetime.fromisoformat(str(moment).replace("Z", "+00:00"))
    except ValueError:
        return None


def jalali_date(moment: Any) -> str:
    """``۱۴۰۵/۰۹/۰۷`` for an RFC 3339 string or datetime; ``—`` when there is none."""
    parsed = _parse(moment)
    return format_date(parsed) if parsed else "—"


def jalali_datetime(moment: Any) -> str:
    """``۱۴۰۵/۰۹/۰۷ ۰۴:۱۲`` (Tehran time) for an RFC 3339 string or datetime."""
    parsed = _parse(moment)
    return format_datetime(parsed) if parsed else "—"


def fa_number(value: Any) -> str:
    """A number with Persian digits and the Persian thousands separator."""
    if value is None:
        return "—"
    if isinstance(value, float) and not value.is_integer():
        return to_persian_digits(f"{value:,.1f}").replace(",", "٬").replace(".", "٫")
    return to_persian_digits(f"{int(value):,}").replace(",", "٬")


def environment(*template_dirs: Path) -> Environment:
    """A Jinja environment finding templates in ``template_dirs`` first, then the shared ones."""
    env = Environment(
        loader=ChoiceLoader(
            [FileSystemLoader(d) for d in template_dirs] + [FileSystemLoader(WEB_DIR / "templates")]
        ),
        autoescape=select_autoescape(["html"]),
    )
    env.filters["fa"] = to_persian_digits
    env.filters["fa_number"] = fa_number
    env.filters["jdate"] = jalali_date
    env.filters["jdatetime"] = jalali_datetime
    return env


def render(env: Environment, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(env.get_template(name).render(**context), status_code=status)


def static_files() -> StaticFiles:
    """The shared assets, served under ``/static/``."""
    return StaticFiles(directory=STATIC_DIR)
