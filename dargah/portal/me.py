"""A signed-in citizen's own pages: applications and their timeline, ratings, complaints, and
"who used my data".

Authentication: a signed-in citizen (``citizen``). Every page reads only rows of the session's
own national code: a tracking code of someone else answers 404, like one that does not exist.
Statuses come from the agencies over the bus (their ``submit_to`` services report them), and
applications an agency opened by itself (proactive services) are found the same way (see
:mod:`dargah.portal.watch`); "my applications" lists what the citizen was told of them.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from dargah.core.persian import to_latin_digits
from dargah.core.purposes import PURPOSES
from dargah.oversight.data_use import data_use
from dargah.portal import notices, records
from dargah.portal.context import PortalContext, citizen_only, page_route, read_form
from dargah.portal.watch import Refresher
from dargah.store.db import READ_ONLY
from dargah.web.sessions import Session

OUTCOME_FA = {
    "ok": "انجام شد",
    "provider-error": "پاسخ خطا از دستگاه",
    "access-denied": "دسترسی رد شد",
}


def routes(ctx: PortalContext, refresh: Refresher) -> list[Route]:
    async def my_applications(request: Request, session: Session) -> Response:
        await run_in_threadpool(refresh, session.principal)

        def load() -> tuple[list[dict[str, Any]], ...]:
            with ctx.engine.connect() as conn:
                return (
                    records.applications_of(conn, session.principal),
                    records.complaints_of(conn, session.principal),
                    notices.recent(conn, session.principal),
                )

        apps, complaints, news = await run_in_threadpool(load)
        services = ctx.catalogue.get().services
        response = ctx.page(
            request,
            "my_applications.html",
            session=session,
            apps=apps,
            complaints=complaints,
            services=services,
            notifications=news,
            unread=sum(1 for n in news if n["read_at"] is None),
        )
        if any(n["read_at"] is None for n in news):
            await run_in_threadpool(notices.mark_read, ctx.engine, session.principal)
        return response

    def one(session: Session, tracking: str) -> dict[str, Any] | None:
        tracking = to_latin_digits(tracking)[:20]
        with ctx.engine.connect() as conn:
            return records.application_of(conn, session.principal, tracking)

    def missing(request: Request) -> Response:
        return ctx.error(
            request, 404, "درخواست یافت نشد", "درخواستی با این کد رهگیری در پرونده شما نیست."
        )

    async def application(request: Request, session: Session) -> Response:
        await run_in_threadpool(refresh, session.principal)
        app = await run_in_threadpool(one, session, str(request.path_params["tracking"]))
        if app is None:
            return missing(request)
        card = ctx.catalogue.get().services.get(app["service_id"], {})
        return ctx.page(
            request,
            "application.html",
            session=session,
            app=app,
            card=card,
            new=request.query_params.get("new") == "1",
            done=app["completed_at"] is not None,
        )

    async def rate(request: Request, session: Session) -> Response:
        app = await run_in_threadpool(one, session, str(request.path_params["tracking"]))
        if app is None:
            return missing(request)
        form = await read_form(request)
        if not ctx.sessions.csrf_ok(request, form.get("csrf"), session):
            return ctx.error(
                request, 403, "درخواست پذیرفته نشد", "فرم منقضی شده است؛ صفحه را دوباره باز کنید."
            )
        score = to_latin_digits(form.get("score", ""))
        if app["completed_at"] is None:
            return ctx.error(
                request, 409, "هنوز زود است", "پس از پایان رسیدگی می‌توانید امتیاز دهید."
            )
        if score not in {"1", "2", "3", "4", "5"}:
            return ctx.error(request, 400, "امتیاز نادرست", "امتیازی از ۱ تا ۵ برگزینید.")
        comment = (form.get("comment") or "").strip()[:1000] or None

        def store() -> None:
            with ctx.engine.begin() as conn:
                records.rate(conn, app, int(score), comment)

        await run_in_threadpool(store)
        return RedirectResponse(f"/me/applications/{app['tracking_code']}?rated=1", status_code=303)

    async def complain(request: Request, session: Session) -> Response:
        form = await read_form(request)
        if not ctx.sessions.csrf_ok(request, form.get("csrf"), session):
            return ctx.error(
                request, 403, "درخواست پذیرفته نشد", "فرم منقضی شده است؛ صفحه را دوباره باز کنید."
            )
        sid = to_latin_digits(form.get("service_id", ""))[:11]
        card = ctx.catalogue.get().services.get(sid)
        text = (form.get("text") or "").strip()
        if card is None:
            return ctx.error(request, 400, "خدمت نامعتبر", "خدمتی با این شناسه در فهرست نیست.")
        if not 5 <= len(text) <= 2000:
            return ctx.error(request, 400, "متن شکایت", "متن شکایت باید بین ۵ تا ۲۰۰۰ نویسه باشد.")
        app = None
        if form.get("tracking"):
            app = await run_in_threadpool(one, session, form["tracking"])
            if app is None:
                return missing(request)

        def store() -> str:
            with ctx.engine.begin() as conn:
                return records.file_complaint(
                    conn,
                    national_code=session.principal,
                    service_id=sid,
                    member_id=card["member_id"],
                    application_id=app["id"] if app else None,
                    text=text,
                )

        await run_in_threadpool(store)
        return RedirectResponse("/me/applications?complained=1#complaints", status_code=303)

    async def my_data_use(request: Request, session: Session) -> Response:
        raw = to_latin_digits(request.query_params.get("before", ""))
        before = int(raw) if raw.isdigit() and len(raw) < 19 else None

        def load() -> list[dict[str, Any]]:
            with ctx.engine.connect().execution_options(**READ_ONLY) as conn:
                return data_use(conn, session.principal, before=before)

        rows = await run_in_threadpool(load)
        return ctx.page(
            request,
            "data_use.html",
            session=session,
            rows=rows,
            outcomes=OUTCOME_FA,
            purposes=PURPOSES,
            next_before=rows[-1]["seq"] if len(rows) >= 50 else None,
        )

    return [
        page_route("/me/applications", citizen_only(ctx, my_applications), auth="citizen"),
        page_route("/me/applications/{tracking}", citizen_only(ctx, application), auth="citizen"),
        page_route(
            "/me/applications/{tracking}/rating",
            citizen_only(ctx, rate),
            auth="citizen",
            methods=("POST",),
        ),
        page_route(
            "/me/complaints", citizen_only(ctx, complain), auth="citizen", methods=("POST",)
        ),
        page_route("/me/data-use", citizen_only(ctx, my_data_use), auth="citizen"),
    ]
