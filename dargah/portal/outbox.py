"""The sandbox's SMS and e-mail outbox (platform.md): ``/sandbox/outbox`` and its JSON twin.

Authentication: none, and only on sandbox instances (``DEV``, ``TEST``): a production instance
answers 404, since its messages really go out and their codes are secrets.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dargah.portal.context import PortalContext, page_route
from dargah.store.db import READ_ONLY
from dargah.store.tables import outbox

LIMIT = 1000


def messages(ctx: PortalContext) -> list[dict[str, Any]]:
    """The newest :data:`LIMIT` messages, oldest first."""
    with ctx.engine.connect().execution_options(**READ_ONLY) as conn:
        rows = conn.execute(select(outbox).order_by(outbox.c.id.desc()).limit(LIMIT)).all()
    return [
        {"to": r.recipient, "text": r.text, "code": r.code, "sent_at": r.sent_at}
        for r in reversed(rows)
    ]


def routes(ctx: PortalContext) -> list[Route]:
    def absent(request: Request) -> Response:
        return ctx.error(request, 404, "صفحه یافت نشد", "این نشانی در درگاه نیست.")

    async def page(request: Request) -> Response:
        if not ctx.sandbox:
            return absent(request)
        return ctx.page(request, "outbox.html", messages=await run_in_threadpool(messages, ctx))

    async def as_json(request: Request) -> Response:
        if not ctx.sandbox:
            return absent(request)
        return JSONResponse(await run_in_threadpool(messages, ctx))

    return [
        page_route("/sandbox/outbox", page, auth="sandbox"),
        page_route("/sandbox/outbox.json", as_json, auth="sandbox"),
    ]
