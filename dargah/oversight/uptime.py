"""What everyone may see of the bus's health: each agency's and service's state now, its daily
uptime over 90 days, and the incidents with their updates.

A service is **down** while an open incident lists it. Its uptime on a day (Tehran time) is
the share of the day (of its elapsed part, today; from its registration, on its first day)
not covered by an outage of an incident that lists it. Incidents' timelines are shown
without the operators' notes and owners: only what the monitor and the resolution say.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from dargah.core.clock import rfc3339
from dargah.core.jalali import TEHRAN
from dargah.store.tables import incident_events, incident_outages, incidents, members, services

DAYS = 90
PUBLIC_KINDS = ("opened", "updated", "reopened", "resolved")


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


@dataclass(frozen=True, slots=True)
class Span:
    start: datetime
    end: datetime


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=TEHRAN)
    return start, start + timedelta(days=1)


def daily_uptime(
    spans: list[Span], first: datetime, now: datetime, days: int = DAYS
) -> list[dict[str, Any]]:
    """Uptime percent per Tehran day, oldest first; None for days before ``first``."""
    today = now.astimezone(TEHRAN).date()
    out: list[dict[str, Any]] = []
    for back in range(days - 1, -1, -1):
        day = today - timedelta(days=back)
        start, end = day_bounds(day)
        start, end = max(start, first), min(end, now)
        if end <= start:
            out.append({"day": day.isoformat(), "uptime": None})
            continue
        down = 0.0
        for s in _merged(spans):
            overlap = (min(end, s.end) - max(start, s.start)).total_seconds()
            down += max(0.0, overlap)
        total = (end - start).total_seconds()
        out.append({"day": day.isoformat(), "uptime": round(100 * (1 - down / total), 2)})
    return out


def _merged(spans: list[Span]) -> list[Span]:
    out: list[Span] = []
    for s in sorted(spans, key=lambda s: s.start):
        if out and s.start <= out[-1].end:
            out[-1] = Span(out[-1].start, max(out[-1].end, s.end))
        else:
            out.append(s)
    return out


def public_status(conn: Connection, now: datetime) -> dict[str, Any]:
    """Agencies with their services' state and 90 days of uptime; incidents of 90 days."""
    since = now - timedelta(days=DAYS + 1)
    names = {r.id: r.name for r in conn.execute(select(members.c.id, members.c.name))}
    recent = [
        dict(r)
        for r in conn.execute(
            select(incidents)
            .where((incidents.c.state == "open") | (incidents.c.resolved_at >= rfc3339(since)))
            .order_by(incidents.c.id.desc())
        ).mappings()
    ]
    for i in recent:
        i["services"] = json.loads(i["services"]) if i["services"] else [i["service_id"]]
    by_id = {i["id"]: i for i in recent}
    spans: dict[str, list[Span]] = {}
    if by_id:
        for o in conn.execute(
            select(incident_outages).where(incident_outages.c.incident_id.in_(list(by_id)))
        ):
            span = Span(_parse(o.started_at), _parse(o.ended_at) if o.ended_at else now)
            for sid in by_id[o.incident_id]["services"]:
                spans.setdefault(sid, []).append(span)
        for i in recent:
            i["updates"] = [
                dict(e)
                for e in conn.execute(
                    select(incident_events.c.ts, incident_events.c.kind, incident_events.c.text)
                    .where(
                        incident_events.c.incident_id == i["id"],
                        incident_events.c.kind.in_(PUBLIC_KINDS),
                    )
                    .order_by(incident_events.c.id.desc())
                ).mappings()
            ]
    down = {s for i in recent if i["state"] == "open" for s in i["services"]}
    agencies: dict[str, dict[str, Any]] = {}
    for svc in conn.execute(
        select(services.c.id, services.c.subsystem_id, services.c.title, services.c.created_at)
        .where(services.c.status == "active")
        .order_by(services.c.id)
    ):
        member = svc.subsystem_id.rsplit("/", 1)[0]
        a = agencies.setdefault(
            member, {"id": member, "name": names.get(member) or member, "down": 0, "services": []}
        )
        days = daily_uptime(spans.get(svc.id, []), _parse(svc.created_at), now)
        measured = [d["uptime"] for d in days if d["uptime"] is not None]
        a["services"].append(
            {
                "id": svc.id,
                "title": svc.title or svc.id.rsplit("/", 1)[-1],
                "state": "down" if svc.id in down else "up",
                "days": days,
                "uptime_90d": round(sum(measured) / len(measured), 2) if measured else None,
            }
        )
        a["down"] += svc.id in down
    return {
        "agencies": sorted(agencies.values(), key=lambda a: (-a["down"], a["name"])),
        "incidents": [
            {
                k: i[k]
                for k in (
                    "id",
                    "state",
                    "services",
                    "summary",
                    "summary_fa",
                    "started_at",
                    "opened_at",
                    "resolved_at",
                    "updates",
                )
                if k in i
            }
            for i in recent
        ],
        "down": len(down),
        "generated_at": now.isoformat(),
    }
