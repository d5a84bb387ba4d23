"""Rendering pages: a Jinja environment over the shared layouts, with Persian filters.

Two layouts: ``gov.html``, the citizens' design system (``static/dargah.css``, inlined in every
page so that nothing blocks the first paint; see docs/design.md), and ``layout.html``, the
operator's pages on Bootstrap (console, dashboard). Pages name static files through
``asset('path')``, which adds the file's fingerprint (see :mod:`dargah.web.assets`).
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from dargah.core.jalali import format_date, format_datetime
from dargah.core.persian import to_persian_digits
from dargah.web.assets import asset_url, static_app

WEB_DIR = Path(__file__).parent
STATIC_DIR = WEB_DIR / "static"
_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_URL = re.compile(r'url\("/static/([^"?]+)"\)')


@functools.cache
def design_css() -> Markup:
    """The design system's stylesheet for a ``<style>`` element: comments and indentation
    dropped, fonts named by fingerprint (so browsers keep them for a year)."""
    css = (STATIC_DIR / "dargah.css").read_text(encoding="utf-8")
    css = _COMMENT.sub("", css)
    css = _URL.sub(lambda m: f'url("{asset_url(m.group(1))}")', css)
    css = "\n".join(line.strip() for line in css.splitlines() if line.strip())
    return Markup(css.replace("</", "<\\/"))  # noqa: S704 -- our own file, no input


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
    env.globals["asset"] = asset_url
    env.globals["design_css"] = design_css
    return env


def render(env: Environment, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(env.get_template(name).render(**context), status_code=status)


def static_files() -> StaticFiles:
    """The shared assets, served under ``/static/`` (cached for a year when fingerprinted)."""
    return static_app()
