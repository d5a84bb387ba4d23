"""Connection coverage: which agencies are on the bus and on the portal, since when, how busy.

On the bus: the member has active subsystems and active bus services. On the portal: it has
active public services in the catalogue that the portal can act on (a ``submit_to`` address
or ``data_sources``). Traffic: message-log records in which the member is the client or the
provider, over the last 24 hours and 7 days.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select
from starlette.responses import Response

from dargah.console.web import policy
from dargah.console.web.guard import Page, requires
from dargah.console.web.policy import ALL
from dargah.core.clock import rfc3339
from dargah.store.tables import members, message_log, public_services, services, subsystems


def _traffic(conn: Connection, since: datetime) -> dict[str, dict[str, int]]:
    rows = conn.execute(
        select(message_log.c.client, message_log.c.service, func.count())
        .where(message_log.c.ts >= rfc3339(since))
        .group_by(message_log.c.client, message_log.c.service)
    ).all()
    out: dict[str, dict[str, int]] = {}
    for client, service, count in rows:
        if client:
            entry = out.setdefault(policy.member_of(client), {"as_client": 0, "as_provider": 0})
            entry["as_client"] += int(count)
        if service:
            entry = out.setdefault(policy.member_of(service), {"as_client": 0, "as_provider": 0})
            entry["as_provider"] += int(count)
    return out


def _linked(value: Any) -> bool:
    return bool(value) and str(value).strip() not in ("", "[]", "null", "{}")


def coverage(conn: Connection, now: datetime | None = None) -> list[dict[str, Any]]:
    """One row per member: bus and portal connection, since when, and traffic."""
    now = now or datetime.now(UTC)
    rows: dict[str, dict[str, Any]] = {}
    for m in conn.execute(select(members).order_by(members.c.id)).mappings():
        rows[m["id"]] = {
            "id": m["id"],
            "name": m["name"],
            "status": m["status"],
            "subsystems": 0,
            "services": 0,
            "bus_since": None,
            "public_services": 0,
            "portal_services": 0,
            "portal_since": None,
        }
    for sub in conn.execute(select(subsystems).where(subsystems.c.status == "active")).mappings():
        if sub["member_id"] in rows:
            rows[sub["member_id"]]["subsystems"] += 1
    for svc in conn.execute(select(services).where(services.c.status == "active")).mappings():
        row = rows.get(policy.member_of(svc["id"]))
        if row is not None:
            row["services"] += 1
            if row["bus_since"] is None or svc["created_at"] < row["bus_since"]:
                row["bus_since"] = svc["created_at"]
    for ps in conn.execute(
        select(
            public_services.c.member_id,
            public_services.c.submit_to,
            public_services.c.data_sources,
            public_services.c.created_at,
        ).where(public_services.c.status == "active")
    ).mappings():
        row = rows.get(ps["member_id"])
        if row is None:
            continue
        row["public_services"] += 1
        if _linked(ps["submit_to"]) or _linked(ps["data_sources"]):
            row["portal_services"] += 1
            if row["portal_since"] is None or ps["created_at"] < row["portal_since"]:
                row["portal_since"] = ps["created_at"]
    day = _traffic(conn, now - timedelta(days=1))
    week = _traffic(conn, now - timedelta(days=7))
    zero = {"as_client": 0, "as_provider": 0}
    for mid, row in rows.items():
        row["on_bus"] = row["subsystems"] > 0 and row["services"] > 0
        row["on_portal"] = row["portal_services"] > 0
        row["day"] = day.get(mid, zero)
        row["week"] = week.get(mid, zero)
    return list(rows.values())


@requires(*ALL)
def coverage_page(page: Page) -> Response:
    with page.engine.connect() as conn:
        found = [r for r in coverage(conn) if policy.can_see(page.me, r["id"])]
    totals = {
        "members": len(found),
        "on_bus": sum(1 for r in found if r["on_bus"]),
        "on_portal": sum(1 for r in found if r["on_portal"]),
    }
    return page.render("coverage.html", rows=found, totals=totals)


PAGES = [("/console/coverage", coverage_page, False)]
