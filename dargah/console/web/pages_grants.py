"""Grant requests and their decisions, and the audit trail."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from starlette.responses import RedirectResponse, Response

from dargah.console.web import inputs, policy
from dargah.console.web.guard import Page, requires
from dargah.console.web.policy import AGENCY_ADMIN, ALL, OPERATOR
from dargah.core.errors import BadRequest
from dargah.registry import grants
from dargah.store.tables import audit_log

STATUSES = ("requested", "approved", "rejected", "revoked")
STATUS_FA = {
    "requested": "در انتظار تصمیم",
    "approved": "پذیرفته",
    "rejected": "رد شده",
    "revoked": "لغو شده",
}
AUDIT_PAGE = 100


@requires(*ALL)
def grant_list(page: Page) -> Response:
    status = inputs.choice(page.query, "status", STATUSES)
    user = page.me
    with page.engine.connect() as conn:
        found = [
            g for g in grants.list_grants(conn, status=status) if policy.can_see_grant(user, g)
        ]
    found.reverse()
    for g in found:
        g["may"] = [
            d
            for d in ("approve", "reject", "revoke")
            if _possible(g, d) and policy.can_decide(user, g, d)
        ]
    return page.render(
        "grants.html", grants=found, chosen=status, statuses=STATUSES, status_fa=STATUS_FA
    )


def _possible(grant: dict[str, Any], decision: str) -> bool:
    if decision == "revoke":
        return bool(grant["status"] in ("requested", "approved"))
    return bool(grant["status"] == "requested")


@requires(OPERATOR, AGENCY_ADMIN)
def grant_decide(page: Page) -> Response:
    number = inputs.number(page.form, "id", 1, 2**31 - 1)
    decision = inputs.choice(page.form, "decision", ("approve", "reject", "revoke"))
    if number is None or decision is None:
        raise BadRequest("id and decision are required", "درخواست و تصمیم را مشخص کنید")
    user = page.me
    with page.engine.begin() as conn:
        grant = grants.get_grant(conn, number)
        policy.require_grant_visible(user, grant)
        policy.require_decide(user, grant, decision)
        grants.decide(conn, number, decision, user.actor, inputs.text(page.form, "reason", 500))
    return RedirectResponse("/console/grants", 303)


@requires(*ALL)
def audit_trail(page: Page) -> Response:
    target = inputs.text(page.query, "target", 300)
    before = inputs.number(page.query, "before", 1, 2**62)
    q = select(audit_log).order_by(audit_log.c.id.desc()).limit(AUDIT_PAGE)
    allowed = policy.audit_filter(page.me)
    if allowed is not None:
        q = q.where(allowed)
    if target:
        q = q.where(audit_log.c.target == target)
    if before is not None:
        q = q.where(audit_log.c.id < before)
    with page.engine.connect() as conn:
        entries = [dict(r) for r in conn.execute(q).mappings()]
    more = entries[-1]["id"] if len(entries) == AUDIT_PAGE else None
    return page.render("audit.html", entries=entries, target=target or "", more=more)


PAGES = [
    ("/console/grants", grant_list, False),
    ("/console/grants", grant_decide, True),
    ("/console/audit", audit_trail, False),
]
