"""A signed-in citizen's own pages: applications and their timeline, ratings, complaints, and
"who used my data".

Authentication: a signed-in citizen (``citizen``). Every page reads only rows of the session's
own national code: a tracking code of someone else answers 404, like one that does not exist.
Statuses come from the agencies over the bus (their ``submit_to`` services report them), and
applications an agency opened by itself (proactive services) are found the same way.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from dargah.core.persian import to_latin_digits
from dargah.core.purposes import PURPOSES
from dargah.oversight.data_use import data_use
from dargah.portal import records
from dargah.portal.context import PortalContext, citizen_only, page_route, read_form
from dargah.portal.gateway import APPLICATION_PURPOSE, BusUnavailable
from dargah.store.db import READ_ONLY
from dargah.store.people_tables import otp_codes
from dargah.web.sessions import Session

REFRESH_SECONDS = 3.0
OUTCOME_FA = {
    "ok": "انجام شد",
    "provider-error": "پاسخ خطا از دستگاه",
    "access-denied": "دسترسی رد شد",
}


class Refresher:
    """Asks agencies for news of one citizen's applications, at most every 3 s per citizen."""

    def __init__(self, ctx: PortalContext) -> None:
        self.ctx = ctx
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, national_code: str) -> None:
        with self._lock:
            if time.monotonic() - self._last.get(national_code, 0.0) < REFRESH_SECONDS:
                return
            if len(self._last) > 50_000:
                self._last.clear()
            self._last[national_code] = time.monotonic()
        ctx = self.ctx
        if not ctx.bus.available:
            return
        with ctx.engine.connect() as conn:
            mine = records.applications_of(conn, national_code)
            mobile = conn.execute(
                select(otp_codes.c.mobile)
                .where(otp_codes.c.national_code == national_code)
                .order_by(otp_codes.c.id.desc())
                .limit(1)
            ).scalar()
        known = {(a["submit_to"], a["agency_ref"]) for a in mine}
        acceptors = self._acceptors()
        # Ask only the agencies that hold an open application of this citizen, and those with
        # a proactive service (which may have opened one by themselves): not every agency.
        asked = {a["submit_to"] for a in mine if a["submit_to"] and a["completed_at"] is None}
        asked |= {
            sid
            for sid, cards in acceptors.items()
            if any(c.get("proactive_topic_ids") for c in cards)
        }
        for submit_to in sorted(asked):
            cards = acceptors.get(submit_to, [])
            src = ctx.sources.service(submit_to)
            if src is None or src.person_path is None:
                continue
            try:
                answer = ctx.bus.call(
                    submit_to,
                    src.person_path.replace("{national_code}", national_code),
                    purpose=APPLICATION_PURPOSE,
                    subject=national_code,
                )
            except BusUnavailable:
                continue
            body = answer.body if isinstance(answer.body, dict) else {}
            for item in body.get("applications") or []:
                if isinstance(item, dict):
                    self._merge(national_code, submit_to, cards, item, mine, known, mobile)

    def _acceptors(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for card in self.ctx.catalogue.get().services.values():
            if card.get("submit_to"):
                out.setdefault(card["submit_to"], []).append(card)
        return out

    def _merge(
        self,
        national_code: str,
        submit_to: str,
        cards: list[dict[str, Any]],
        item: dict[str, Any],
        mine: list[dict[str, Any]],
        known: set[tuple[Any, Any]],
        mobile: str | None,
    ) -> None:
        ref = str(item.get("id") or "")
        status = str(item.get("status") or "received")
        status_fa = str(item.get("status_fa") or records.STATUS_FA.get(status, status))
        with self.ctx.engine.begin() as conn:
            if (submit_to, ref) not in known:
                sid = str(item.get("service_id") or "")
                if sid not in {c["service_id"] for c in cards}:
                    return
                app = records.create_application(
                    conn,
                    national_code=national_code,
                    service_id=sid,
                    submit_to=submit_to,
                    agency_ref=ref,
                    channel="proactive" if item.get("channel") == "proactive" else "agency",
                    status=status,
                    status_fa=status_fa,
                    data=item.get("details") or {},
                    created_at=item.get("submitted_at"),
                    note="این خدمت را دستگاه بدون درخواست شما برایتان آغاز کرد."
                    if item.get("channel") == "proactive"
                    else None,
                )
                known.add((submit_to, ref))
                records.notify(
                    conn,
                    mobile,
                    f"درگاه ملی خدمات: پرونده تازه‌ای برای شما باز شد؛ کد رهگیری {app['tracking_code']}.",
                )
                return
            for app in mine:
                if (app["submit_to"], app["agency_ref"]) == (submit_to, ref):
                    if records.set_status(conn, app, status, status_fa):
                        records.notify(
                            conn,
                            mobile,
                            f"درگاه ملی خدمات: وضعیت درخواست {app['tracking_code']} «{status_fa}» شد.",
                        )


def routes(ctx: PortalContext) -> list[Route]:
    refresh = Refresher(ctx)

    async def my_applications(request: Request, session: Session) -> Response:
        await run_in_threadpool(refresh, session.principal)

        def load() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            with ctx.engine.connect() as conn:
                return (
                    records.applications_of(conn, session.principal),
                    records.complaints_of(conn, session.principal),
                )

        apps, complaints = await run_in_threadpool(load)
        services = ctx.catalogue.get().services
        return ctx.page(
            request,
            "my_applications.html",
            session=session,
            apps=apps,
            complaints=complaints,
            services=services,
        )

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
