"""Applying once-only: consent, pre-fill over the bus, the citizen's own fields, submission.

Authentication: a signed-in citizen (``citizen``), who applies for themself only; every form
carries the session's CSRF token.

1. ``GET /services/{id}/apply`` shows what will be fetched, from which agency and why.
2. ``POST …/apply/consent`` records the consent and fetches each source over the bus
   (purpose ``service-application``, subject the citizen).
3. ``GET …/apply/form`` shows the fetched data read-only with its source and asks only for
   what no agency holds; ``POST`` checks it against the schema and sends the application to
   the service's ``submit_to`` bus service; the citizen gets a tracking code.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from dargah.portal import forms, notices, prefill, records
from dargah.portal.context import PortalContext, citizen_only, page_route, read_form
from dargah.portal.gateway import APPLICATION_PURPOSE, BusUnavailable
from dargah.web.sessions import Session

CONSENT_VALID = timedelta(minutes=30)
_SERVICE_ID = re.compile(r"[0-9]{11}")


def can_apply(card: dict[str, Any]) -> bool:
    return bool(card.get("form_schema") and card.get("submit_to"))


def routes(ctx: PortalContext) -> list[Route]:
    def card_of(request: Request) -> dict[str, Any] | None:
        sid = str(request.path_params["service_id"])
        card = ctx.catalogue.get().services.get(sid) if _SERVICE_ID.fullmatch(sid) else None
        return card if card is not None and can_apply(card) else None

    def no_card(request: Request) -> Response:
        return ctx.error(
            request,
            404,
            "درخواست برخط ممکن نیست",
            "این خدمت در فهرست نیست یا هنوز درخواست برخط از راه درگاه ندارد.",
        )

    def fresh_consent(session: Session, sid: str) -> dict[str, Any] | None:
        consent = records.latest_consent(ctx.engine, session.principal, sid)
        if consent is None:
            return None
        given = datetime.fromisoformat(consent["given_at"].replace("Z", "+00:00"))
        return consent if datetime.now(UTC) - given < CONSENT_VALID else None

    async def consent_page(request: Request, session: Session) -> Response:
        card = card_of(request)
        if card is None:
            return no_card(request)
        plans, missing = prefill.plan(card["form_schema"], ctx.sources)
        return ctx.page(
            request,
            "apply_consent.html",
            session=session,
            s=card,
            plans=plans,
            missing=missing,
            available=ctx.bus.available,
        )

    def fetch_all(session: Session, card: dict[str, Any]) -> list[dict[str, Any]]:
        schema = card["form_schema"]
        props = schema.get("properties") or {}
        plans, _ = prefill.plan(schema, ctx.sources)
        fetched = []
        for p in plans:
            path = (p.source.person_path or "").replace("{national_code}", session.principal)
            entry: dict[str, Any] = {
                "service_id": p.source.service_id,
                "title": p.source.title,
                "agency": p.source.agency,
                "items": p.items,
                "values": {},
            }
            try:
                answer = ctx.bus.call(
                    p.source.service_id,
                    path,
                    purpose=APPLICATION_PURPOSE,
                    subject=session.principal,
                )
                entry["request_id"] = answer.request_id
                if answer.status < 300:
                    entry["values"] = {
                        f: prefill.value_for(f, props.get(f, {}), answer.body) for f in p.fields
                    }
                else:
                    entry["error"] = "این دستگاه اطلاعاتی از شما نداشت."
            except BusUnavailable as exc:
                entry["error"] = "سامانه این دستگاه اکنون پاسخ نداد."
                entry["code"] = exc.code
            fetched.append(entry)
        records.record_consent(
            ctx.engine, session.principal, card["service_id"], APPLICATION_PURPOSE, fetched
        )
        return fetched

    async def give_consent(request: Request, session: Session) -> Response:
        card = card_of(request)
        if card is None:
            return no_card(request)
        form = await read_form(request)
        if not ctx.sessions.csrf_ok(request, form.get("csrf"), session):
            return ctx.error(
                request, 403, "درخواست پذیرفته نشد", "فرم منقضی شده است؛ صفحه را دوباره باز کنید."
            )
        if form.get("consent") != "yes":
            return RedirectResponse(f"/services/{card['service_id']}", status_code=303)
        await run_in_threadpool(fetch_all, session, card)
        return RedirectResponse(f"/services/{card['service_id']}/apply/form", status_code=303)

    def show_form(
        request: Request,
        session: Session,
        card: dict[str, Any],
        consent: dict[str, Any],
        status: int = 200,
        **extra: Any,
    ) -> Response:
        props = card["form_schema"].get("properties") or {}
        return ctx.page(
            request,
            "apply_form.html",
            status,
            session=session,
            s=card,
            sources=consent["sources"],
            titles={
                k: (v.get("title") if isinstance(v, dict) else k) or k for k, v in props.items()
            },
            fields=forms.citizen_fields(card["form_schema"]),
            values=extra.pop("values", {}),
            errors=extra.pop("errors", {}),
            **extra,
        )

    async def form_page(request: Request, session: Session) -> Response:
        card = card_of(request)
        if card is None:
            return no_card(request)
        consent = await run_in_threadpool(fresh_consent, session, card["service_id"])
        if consent is None:
            return RedirectResponse(f"/services/{card['service_id']}/apply", status_code=303)
        return show_form(request, session, card, consent)

    def submit(
        session: Session, card: dict[str, Any], consent: dict[str, Any], mine: dict[str, Any]
    ) -> dict[str, Any] | str:
        fetched: dict[str, Any] = {}
        for src in consent["sources"]:
            fetched.update({k: v for k, v in src.get("values", {}).items() if v is not None})
        data = {**fetched, **mine}
        tracking = records.new_tracking_code()
        try:
            answer = ctx.bus.call(
                card["submit_to"],
                "/applications",
                method="POST",
                purpose=APPLICATION_PURPOSE,
                subject=session.principal,
                json={
                    "service_id": card["service_id"],
                    "national_code": session.principal,
                    "tracking_code": tracking,
                    "data": data,
                },
            )
        except BusUnavailable:
            return (
                "سامانه دستگاه اکنون درخواست را نپذیرفت. درخواست شما ثبت نشد؛"
                " چند دقیقه دیگر دوباره بفرستید."
            )
        body = answer.body if isinstance(answer.body, dict) else {}
        if answer.status >= 300:
            reason = body.get("detail_fa") or "دستگاه درخواست را نپذیرفت."
            return f"درخواست ثبت نشد: {reason}"
        with ctx.engine.begin() as conn:
            created = records.create_application(
                conn,
                tracking_code=tracking,
                national_code=session.principal,
                service_id=card["service_id"],
                submit_to=card["submit_to"],
                agency_ref=str(body.get("id") or body.get("tracking_code") or "") or None,
                channel="portal",
                status=str(body.get("status") or "received"),
                status_fa=body.get("status_fa"),
                data=data,
                sources=[
                    {k: s.get(k) for k in ("service_id", "title", "agency", "items", "request_id")}
                    for s in consent["sources"]
                    if not s.get("error")
                ],
            )
        title = card.get("title_fa") or card.get("title_en") or card["service_id"]
        notices.send(
            ctx.engine,
            session.principal,
            f"submitted:{tracking}",
            "status",
            f"درخواست شما برای «{title}» ثبت شد؛ کد رهگیری {tracking}.",
            tracking_code=tracking,
        )
        return created

    async def send(request: Request, session: Session) -> Response:
        card = card_of(request)
        if card is None:
            return no_card(request)
        form = await read_form(request)
        if not ctx.sessions.csrf_ok(request, form.get("csrf"), session):
            return ctx.error(
                request, 403, "درخواست پذیرفته نشد", "فرم منقضی شده است؛ صفحه را دوباره باز کنید."
            )
        consent = await run_in_threadpool(fresh_consent, session, card["service_id"])
        if consent is None:
            return RedirectResponse(f"/services/{card['service_id']}/apply", status_code=303)
        values, errors = forms.validate(card["form_schema"], form)
        if errors:
            return show_form(request, session, card, consent, 400, values=form, errors=errors)
        result = await run_in_threadpool(submit, session, card, consent, values)
        if isinstance(result, str):
            return show_form(
                request, session, card, consent, 502, values=form, errors={}, failure=result
            )
        return RedirectResponse(
            f"/me/applications/{result['tracking_code']}?new=1", status_code=303
        )

    base = "/services/{service_id}/apply"
    return [
        page_route(base, citizen_only(ctx, consent_page), auth="citizen"),
        page_route(
            base + "/consent", citizen_only(ctx, give_consent), auth="citizen", methods=("POST",)
        ),
        page_route(base + "/form", citizen_only(ctx, form_page), auth="citizen"),
        page_route(base + "/form", citizen_only(ctx, send), auth="citizen", methods=("POST",)),
    ]
