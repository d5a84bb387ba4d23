"""Oversight in the console: an agency's levels, 7th Plan progress, KPIs and violations;
duplicate candidates (the operator confirms or dismisses them); complaints routed to agencies.

An agency administrator sees its own agency only (:func:`~dargah.console.web.policy.
oversight_scope`); the public dashboard's exports (``/dashboard/export/…``) are linked.
Answering a complaint is kept here because the portal has no function for it: the new status
and answer are written in one transaction with an audit entry on the agency's member, and the
citizen sees them on the portal's own page.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from starlette.responses import RedirectResponse, Response

from dargah.console.web import inputs, policy
from dargah.console.web.guard import Page, requires
from dargah.console.web.oversight_view import (
    LEVEL_FA,
    STANDING_FA,
    agencies_with_services,
    agency_oversight,
)
from dargah.console.web.policy import AGENCY_ADMIN, ALL, OPERATOR
from dargah.core.clock import now_rfc3339, utc_now
from dargah.core.errors import BadRequest, NotFound
from dargah.registry import audit
from dargah.registry.audit import Action
from dargah.registry.catalogue import duplicates as dup
from dargah.store.people_tables import complaints
from dargah.store.tables import public_services

COMPLAINT_FA = {
    "open": "ثبت شده",
    "in-progress": "در حال رسیدگی",
    "answered": "پاسخ داده شد",
    "closed": "بسته شد",
}
ANSWER_STATUSES = ("in-progress", "answered", "closed")
DUPLICATE_FA = {"candidate": "نامزد", "confirmed": "تکراری (تأیید شد)", "dismissed": "رد شد"}
EXPORTS = ("services", "levels", "kpis", "violations")


@requires(*ALL)
def oversight(page: Page) -> Response:
    scope = policy.oversight_scope(page.me, inputs.member_id(page.query, "agency"))
    with page.engine.connect() as conn:
        choices = agencies_with_services(conn) if policy.scope(page.me) is None else []
        view = agency_oversight(conn, scope, utc_now()) if scope else None
    return page.render(
        "oversight.html",
        view=view,
        choices=choices,
        chosen=scope or "",
        standing_fa=STANDING_FA,
        level_fa=LEVEL_FA,
        exports=EXPORTS,
    )


def _titles(page: Page) -> dict[str, tuple[str, str]]:
    t = public_services.c
    with page.engine.connect() as conn:
        rows = conn.execute(select(t.service_id, t.title_fa, t.title_en, t.member_id))
        return {r.service_id: (r.title_fa or r.title_en or r.service_id, r.member_id) for r in rows}


@requires(*ALL)
def duplicate_list(page: Page) -> Response:
    status = inputs.choice(page.query, "status", tuple(DUPLICATE_FA))
    titles = _titles(page)
    pairs: list[dict[str, Any]] = []
    for p in dup.duplicates(page.engine):
        owners = [titles.get(p["a"], ("", ""))[1], titles.get(p["b"], ("", ""))[1]]
        if not any(o and policy.can_see(page.me, o) for o in owners):
            continue
        if status and p["status"] != status:
            continue
        pairs.append(
            {
                **p,
                "title_a": titles.get(p["a"], ("",))[0],
                "title_b": titles.get(p["b"], ("",))[0],
            }
        )
    return page.render(
        "duplicates.html",
        pairs=pairs,
        status_fa=DUPLICATE_FA,
        chosen=status or "",
        may_decide=page.me.role == OPERATOR,
    )


@requires(OPERATOR)
def duplicate_decide(page: Page) -> Response:
    a = inputs.text(page.form, "a", 20)
    b = inputs.text(page.form, "b", 20)
    decision = inputs.choice(page.form, "status", dup.STATUSES)
    if not a or not b or decision is None:
        raise BadRequest("a, b and status are required", "دو خدمت و تصمیم را مشخص کنید")
    policy.require_duplicate_decider(page.me)
    with page.engine.begin() as conn:
        try:
            dup.decide(conn, a, b, decision, page.me.actor, inputs.text(page.form, "reason", 500))
        except ValueError as exc:
            raise BadRequest(str(exc), "این دو خدمت در شناسنامه‌ها یافت نشد") from exc
    return RedirectResponse("/console/duplicates", 303)


@requires(*ALL)
def complaint_list(page: Page) -> Response:
    status = inputs.choice(page.query, "status", tuple(COMPLAINT_FA))
    q = select(complaints).order_by(complaints.c.id.desc()).limit(200)
    mine = policy.complaint_filter(page.me)
    if mine is not None:
        q = q.where(complaints.c.member_id == mine)
    if status:
        q = q.where(complaints.c.status == status)
    titles = _titles(page)
    with page.engine.connect() as conn:
        found = [dict(r) for r in conn.execute(q).mappings()]
    for c in found:
        c["title"] = titles.get(c["service_id"], (c["service_id"],))[0]
        c["may_answer"] = page.me.role == OPERATOR or (
            page.me.role == AGENCY_ADMIN and c["member_id"] == page.me.member_id
        )
    return page.render(
        "complaints.html",
        complaints=found,
        status_fa=COMPLAINT_FA,
        answer_statuses=ANSWER_STATUSES,
        chosen=status or "",
    )


@requires(OPERATOR, AGENCY_ADMIN)
def complaint_answer(page: Page) -> Response:
    number = inputs.number(page.form, "id", 1, 2**31 - 1)
    status = inputs.choice(page.form, "status", ANSWER_STATUSES)
    if number is None or status is None:
        raise BadRequest("id and status are required", "شکایت و وضعیت تازه را مشخص کنید")
    answer = inputs.text(page.form, "answer", 2000)
    with page.engine.begin() as conn:
        row = conn.execute(select(complaints).where(complaints.c.id == number)).mappings().first()
        if row is None:
            raise NotFound(f"no complaint {number}", "شکایت یافت نشد")
        before = dict(row)
        policy.require_answer_complaint(page.me, before)
        answer = answer or before["answer"]
        if status == "answered" and not answer:
            raise BadRequest("an answer is required", "برای «پاسخ داده شد» متن پاسخ را بنویسید")
        after = {**before, "status": status, "answer": answer, "updated_at": now_rfc3339()}
        conn.execute(
            update(complaints)
            .where(complaints.c.id == number)
            .values(status=status, answer=answer, updated_at=after["updated_at"])
        )
        target = f"{before['member_id']}/complaint/{before['tracking_code']}"
        keep = ("status", "answer", "service_id", "tracking_code")
        audit.record(
            conn,
            page.me.actor,
            Action.COMPLAINT_ANSWER,
            target,
            {k: before[k] for k in keep},
            {k: after[k] for k in keep},
            bump=False,
        )
    return RedirectResponse("/console/complaints", 303)


PAGES = [
    ("/console/oversight", oversight, False),
    ("/console/duplicates", duplicate_list, False),
    ("/console/duplicates", duplicate_decide, True),
    ("/console/complaints", complaint_list, False),
    ("/console/complaints", complaint_answer, True),
]
