"""One agency's oversight figures for the console, from oversight's own functions.

Per service: the definition level with the registry's reasons, the verified level and whether
it counts with oversight's reasons (:func:`dargah.oversight.levels.assess`); the agency's
progress toward the 7th Plan (:func:`dargah.oversight.plan.agency_progress`, with the history
of the daily snapshots); its KPIs measured against reported
(:func:`dargah.oversight.kpis.measure_kpis`) and its violations
(:func:`dargah.oversight.violations.find_all`). Evidence is gathered once for all of them.

Oversight has no function for one agency's rows with every reason's text (its
:class:`~dargah.oversight.overview.Overview` keeps reason codes only), so the joining is here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from dargah.core.jalali import TEHRAN
from dargah.oversight.evidence import gather
from dargah.oversight.kpis import measure_kpis
from dargah.oversight.levels import assess
from dargah.oversight.overview import load_snapshots
from dargah.oversight.plan import agency_progress
from dargah.oversight.violations import KIND_NAMES, find_all
from dargah.registry.catalogue.exporter import supplied_items
from dargah.registry.catalogue.levels import definition_level
from dargah.registry.catalogue.service import row_card
from dargah.store.tables import members, public_service_reports, public_services

STANDING_FA = {"ahead": "جلوتر از برنامه", "on-track": "مطابق برنامه", "behind": "عقب‌تر از برنامه"}
LEVEL_FA = ("برون‌خط", "اطلاع‌رسانی", "تعاملی", "تمام‌برخط", "یکپارچه", "پیش‌نگر")


@dataclass
class AgencyOversight:
    member: dict[str, Any]
    services: list[dict[str, Any]] = field(default_factory=list)
    progress: dict[str, Any] = field(default_factory=dict)
    kpis: list[dict[str, Any]] = field(default_factory=list)
    violations: list[dict[str, Any]] = field(default_factory=list)


def agencies_with_services(conn: Connection) -> list[dict[str, Any]]:
    """Members that have public services, by name (for the operator's choice)."""
    owners = set(conn.execute(select(public_services.c.member_id).distinct()).scalars())
    rows = conn.execute(select(members).order_by(members.c.name)).mappings()
    return [dict(m) for m in rows if m["id"] in owners]


def _cards(conn: Connection, member_id: str) -> list[dict[str, Any]]:
    q = select(public_services).where(public_services.c.member_id == member_id)
    rows = [dict(r) for r in conn.execute(q.order_by(public_services.c.service_id)).mappings()]
    ids = [r["service_id"] for r in rows]
    reports: dict[str, list[dict[str, Any]]] = {}
    if ids:
        rq = select(public_service_reports).where(public_service_reports.c.service_id.in_(ids))
        for r in conn.execute(rq).mappings():
            reports.setdefault(r["service_id"], []).append(dict(r))
    return [row_card(r, reports.get(r["service_id"], [])) for r in rows]


def agency_oversight(conn: Connection, member_id: str, now: datetime) -> AgencyOversight:
    member = conn.execute(select(members).where(members.c.id == member_id)).mappings().first()
    out = AgencyOversight(dict(member) if member else {"id": member_id, "name": member_id})
    evidence = gather(conn, now)
    verdicts = assess(conn, now, evidence)
    supplied = supplied_items(conn)
    active: list[str] = []
    smart = 0
    for card in _cards(conn, member_id):
        sid = card["service_id"]
        level, why = definition_level(card, supplied)
        verdict = verdicts.get(sid)
        is_active = card["status"] == "active"
        if is_active:
            active.append(sid)
            smart += bool(verdict and verdict.counted)
        out.services.append(
            {
                "service_id": sid,
                "title": card["title_fa"] or card["title_en"] or sid,
                "active": is_active,
                "declared_level": card["declared_level"],
                "definition_level": level,
                "verified_level": verdict.verified_level if verdict else 0,
                "counted": bool(verdict and verdict.counted),
                "reasons": [*why, *(verdict.reasons if verdict else [])],
            }
        )
    history = [
        (day, float(data.get("smart", 0))) for day, data in load_snapshots(conn).get(member_id, [])
    ]
    today = now.astimezone(TEHRAN).date()
    out.progress = agency_progress(len(active), smart, today, history, agency=member_id)
    out.kpis = measure_kpis(conn, active, now).of(active).rows()
    for finding in find_all(conn, now, evidence):
        if finding.member_id == member_id:
            out.violations.append({**finding.as_dict(), "kind_fa": KIND_NAMES[finding.kind][1]})
    return out
