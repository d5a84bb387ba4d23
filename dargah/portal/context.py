"""What every portal page shares: the store, the bus gateway, the catalogue, sessions, templates."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from dargah.core.settings import Settings
from dargah.portal import notices
from dargah.portal.gateway import PortalBus
from dargah.portal.sources import DataCatalogue
from dargah.web.pages import environment
from dargah.web.routes import AUTH_LEVELS, Auth, page_route
from dargah.web.sessions import Session, SessionStore, mask_token

CHANNELS = {
    "online": "برخط",
    "in_person": "حضوری",
    "phone": "تلفنی",
    "mail": "پستی",
    "kiosk": "باجه",
    "app": "برنامه همراه",
}
_SAFE_NEXT = re.compile(r"^/(?!/)[A-Za-z0-9/_\-?=&.%]*$")


def safe_next(target: str | None, default: str = "/me/applications") -> str:
    """A local address to go to after sign-in; anything else (other sites) becomes ``default``."""
    return target if target and len(target) < 300 and _SAFE_NEXT.match(target) else default


async def read_form(request: Request) -> dict[str, str]:
    """A posted form's text fields; an unreadable body reads as an empty form (the CSRF check
    then refuses it)."""
    try:
        form = await request.form(max_files=0, max_fields=200)
    except Exception:
        return {}
    return {k: v for k, v in form.items() if isinstance(v, str)}


@dataclass
class PortalContext:
    engine: Engine
    settings: Settings
    bus: PortalBus
    sources: DataCatalogue
    sessions: SessionStore
    env: Environment
    sandbox: bool
    catalogue: Any  # CatalogueHolder (kept loose to avoid an import cycle)

    @classmethod
    def build(
        cls, engine: Engine, settings: Settings, sandbox: bool, catalogue: Any
    ) -> PortalContext:
        env = environment(Path(__file__).parent / "templates")
        env.filters["channel"] = lambda c: CHANNELS.get(c, c)
        return cls(
            engine=engine,
            settings=settings,
            bus=PortalBus(settings),
            sources=DataCatalogue(engine),
            sessions=SessionStore(engine, "portal", ttl=timedelta(hours=settings.session_hours)),
            env=env,
            sandbox=sandbox,
            catalogue=catalogue,
        )

    def page(
        self,
        request: Request,
        name: str,
        status: int = 200,
        *,
        session: Session | None = None,
        **context: Any,
    ) -> HTMLResponse:
        """A page with the signed-in citizen (if any) and the CSRF token for its forms."""
        if session is None and "citizen" not in context:
            session = self.sessions.current(request)
        context.setdefault("citizen", session.principal if session else None)
        context.setdefault("csrf", mask_token(session.csrf) if session else "")
        if context["citizen"] and "unread" not in context:
            with self.engine.connect() as conn:
                context["unread"] = notices.unread(conn, str(context["citizen"]))
        return HTMLResponse(self.env.get_template(name).render(**context), status_code=status)

    def error(self, request: Request, status: int, heading: str, message: str) -> HTMLResponse:
        return self.page(request, "error.html", status, heading=heading, message=message)

    def sign_in_first(self, request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)


CitizenEndpoint = Callable[[Request, Session], Awaitable[Response]]


def citizen_only(
    ctx: PortalContext, fn: CitizenEndpoint
) -> Callable[[Request], Awaitable[Response]]:
    """Run ``fn`` with the signed-in citizen's session, or send the browser to sign in."""

    async def endpoint(request: Request) -> Response:
        session = await run_in_threadpool(ctx.sessions.current, request)
        if session is None:
            if request.method == "GET":
                return ctx.sign_in_first(request)
            return ctx.error(request, 401, "ابتدا وارد شوید", "برای این کار باید وارد درگاه شوید.")
        return await fn(request, session)

    return endpoint


__all__ = [
    "AUTH_LEVELS",
    "Auth",
    "PortalContext",
    "citizen_only",
    "page_route",
    "read_form",
    "safe_next",
]
