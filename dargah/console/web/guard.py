"""Every console page states its authentication, and this module enforces it in front of the page.

A page is a plain function ``(Page) -> Response`` marked with :func:`requires` (the roles it
admits) or :func:`public` (with the reason). :func:`page_route` refuses, when the app is
built, a function marked with neither, and wraps the page so that before it runs:

1. the session cookie is looked up and its account re-read (a deactivated account is signed
   out at once); an anonymous visitor is sent to ``/console/login`` (303);
2. a role the page does not admit gets a 403 page;
3. a POST needs the CSRF token of its session (or, for the sign-in form, of the pre-session
   cookie) and a same-site origin, else 403; a form may carry a file only on a page routed
   with ``upload=`` bytes (the file is read into :attr:`Page.files`);
4. the page runs in a worker thread (database calls never block the event loop); a
   :class:`~dargah.core.errors.DargahError` becomes a Persian page with its status, anything
   else a Persian 500 page with nothing of the error shown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from dargah.console.web.accounts import ConsoleUser, active_user
from dargah.core.errors import DargahError
from dargah.web.pages import environment
from dargah.web.sessions import Session, SessionStore

log = logging.getLogger("dargah.console.web")
LOGIN_PATH = "/console/login"
SESSION_TTL = timedelta(hours=8)  # when the caller does not give the instance's setting
MAX_FORM_BYTES = 64 * 1024
ENV = environment(Path(__file__).parent / "templates")
_TITLES = {
    400: "درخواست نامعتبر",
    401: "ابتدا وارد شوید",
    403: "دسترسی ندارید",
    404: "یافت نشد",
    405: "روش درخواست پذیرفته نیست",
    409: "این کار اکنون شدنی نیست",
    413: "فرم بیش از اندازه بزرگ است",
}


@dataclass(frozen=True, slots=True)
class Access:
    """A page's declared authentication: the roles it admits, or public with a reason."""

    roles: frozenset[str]
    public_reason: str | None = None


Handler = Callable[["Page"], Response]


def requires(*roles: str) -> Callable[[Handler], Handler]:
    if not roles:
        raise ValueError("a page must admit at least one role, or be marked public")

    def mark(handler: Handler) -> Handler:
        handler.console_access = Access(frozenset(roles))  # type: ignore[attr-defined]
        return handler

    return mark


def public(reason: str) -> Callable[[Handler], Handler]:
    def mark(handler: Handler) -> Handler:
        handler.console_access = Access(frozenset(), reason)  # type: ignore[attr-defined]
        return handler

    return mark


def declared_access(route: Any) -> Access | None:
    """The access a route of the console declares, or None."""
    access = getattr(getattr(route, "endpoint", None), "console_access", None)
    return access if isinstance(access, Access) else None


@dataclass
class Page:
    """What a page gets: the request, its form, the signed-in user and the session."""

    request: Request
    store: SessionStore
    engine: Engine
    state: Any
    user: ConsoleUser | None
    session: Session | None
    form: dict[str, str] = field(default_factory=dict)
    csrf: str = ""
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # name -> (filename, data)

    @property
    def query(self) -> QueryParams:
        return self.request.query_params

    @property
    def me(self) -> ConsoleUser:
        if self.user is None:  # pages that admit roles never run without a user
            raise RuntimeError("no signed-in user")
        return self.user

    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return render_page(name, status, user=self.user, csrf=self.csrf, **context)


def render_page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("user", None)
    context.setdefault("csrf", "")
    response = HTMLResponse(ENV.get_template(name).render(**context), status_code=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def error_page(status: int, message: str, user: ConsoleUser | None = None) -> HTMLResponse:
    title = _TITLES.get(status, "خطایی رخ داد")
    return render_page("error.html", status, title=title, message=message, user=user)


def _identify(
    store: SessionStore, engine: Engine, request: Request
) -> tuple[Session | None, ConsoleUser | None]:
    session = store.current(request)
    if session is None:
        return None, None
    with engine.connect() as conn:
        user = active_user(conn, session.principal)
    return (session, user) if user is not None else (None, None)


def page_route(
    path: str,
    handler: Handler,
    store: SessionStore,
    engine: Engine,
    state: Any,
    post: bool = False,
    upload: int = 0,
) -> Route:
    """The route for a page, with its declared authentication enforced in front of it.

    ``upload``: the largest form, in bytes, of a page that takes one file (0: no file).
    """
    access = getattr(handler, "console_access", None)
    if not isinstance(access, Access):
        raise TypeError(f"{path}: mark {handler.__name__} with @requires(...) or @public(...)")

    async def endpoint(request: Request) -> Response:
        session, user = await run_in_threadpool(_identify, store, engine, request)
        if access.public_reason is None:
            if user is None:
                target = request.url.path
                if request.url.query:
                    target += "?" + request.url.query
                if request.method == "GET" and "hx-request" not in request.headers:
                    return RedirectResponse(f"{LOGIN_PATH}?next={quote(target)}", 303)
                response = error_page(401, "برای دیدن این صفحه ابتدا وارد شوید.")
                response.headers["HX-Redirect"] = LOGIN_PATH
                return response
            if user.role not in access.roles:
                return error_page(403, "نقش شما اجازه دیدن این صفحه را ندارد.", user)
        page = Page(
            request, store, engine, state, user, session, csrf=session.csrf if session else ""
        )
        if request.method == "POST":
            limit = max(upload, MAX_FORM_BYTES)
            if int(request.headers.get("content-length") or 0) > limit:
                return error_page(413, "فرم فرستاده‌شده بیش از اندازه بزرگ است.", user)
            try:
                form = await request.form(max_files=1 if upload else 0, max_fields=80)
                for name, value in form.items():
                    if isinstance(value, str):
                        page.form[name] = value
                    elif value.filename:
                        data = await value.read(limit + 1)
                        if len(data) > limit:
                            return error_page(413, "پرونده بیش از اندازه بزرگ است.", user)
                        page.files[name] = (value.filename, data)
            except Exception:
                return error_page(400, "فرم فرستاده‌شده خوانا نیست.", user)
            if not store.csrf_ok(request, page.form.get("csrf"), session):
                return error_page(
                    403,
                    "فرم منقضی شده یا از جای دیگری فرستاده شده است؛ صفحه را دوباره باز کنید.",
                    user,
                )
        try:
            return await run_in_threadpool(handler, page)
        except DargahError as exc:
            status = exc.status if exc.status in _TITLES else 400
            return error_page(status, exc.detail_fa or "درخواست پذیرفته نشد.", user)
        except Exception:
            log.exception("console page %s failed", path)
            return error_page(
                500, "متأسفیم؛ مشکلی پیش آمد. چند لحظه دیگر دوباره امتحان کنید.", user
            )

    endpoint.console_access = access  # type: ignore[attr-defined]
    endpoint.__name__ = handler.__name__
    return Route(path, endpoint, methods=["POST"] if post else ["GET"], name=handler.__name__)
