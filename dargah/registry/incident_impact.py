"""What an incident means for citizens: the public services it breaks and their applications.

A public service (catalogue card) is broken by an incident when one of its ``data_sources``
(the bus services it fetches from) or its ``submit_to`` (the service that receives its
applications) is among the incident's services. Citizens' requests that **failed** are the
calls about a citizen (``subject_ref`` set) to those services that failed on the provider's
side since the failure started; applications **waiting** are those submitted to those
services and not yet finished.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, func, select

from dargah.store.people_tables import applications
from dargah.store.tables import message_log, public_services

FAILURES = ("provider-unavailable", "provider-timeout", "circuit-open", "response-too-large")


def _list(raw: str | None) -> list[str]:
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def cards_using(conn: Connection, services: Iterable[str]) -> list[dict[str, Any]]:
    """Active public services whose data sources or submission service are in ``services``."""
    wanted = set(services)
    out = []
    for r in conn.execute(
        select(
            public_services.c.service_id,
            public_services.c.title_fa,
            public_services.c.data_sources,
            public_services.c.submit_to,
        )
        .where(public_services.c.status == "active")
        .order_by(public_services.c.service_id)
    ):
        sources = set(_list(r.data_sources)) & wanted
        submits = r.submit_to in wanted
        if sources or submits:
            out.append(
                {
                    "service_id": r.service_id,
                    "title_fa": r.title_fa,
                    "sources_down": sorted(sources),
                    "submission_down": submits,
                }
            )
    return out


def impact(conn: Connection, incident: dict[str, Any]) -> dict[str, Any]:
    """The public services an incident breaks, and how many citizens it stopped."""
    services = list(incident["services"])
    since = incident.get("started_at") or incident["opened_at"]
    until = incident.get("recovered_at") if incident.get("state") == "resolved" else None
    failed_q = (
        select(func.count())
        .select_from(message_log)
        .where(
            message_log.c.service.in_(services),
            message_log.c.ts >= since,
            message_log.c.outcome.in_(FAILURES),
            message_log.c.subject_ref.is_not(None),
        )
    )
    if until:
        failed_q = failed_q.where(message_log.c.ts <= until)
    waiting = conn.execute(
        select(func.count())
        .select_from(applications)
        .where(applications.c.submit_to.in_(services), applications.c.completed_at.is_(None))
    ).scalar_one()
    return {
        "public_services": cards_using(conn, services),
        "citizen_requests_failed": int(conn.execute(failed_q).scalar_one()),
        "applications_waiting": int(waiting),
    }


def down_sources(
    open_incidents: Iterable[dict[str, Any]], data_sources: Iterable[str], submit_to: str | None
) -> dict[str, Any] | None:
    """For a portal page: which of a card's sources the open incidents take down (or None)."""
    down: set[str] = set()
    for i in open_incidents:
        down |= set(i["services"])
    sources = sorted(set(data_sources) & down)
    submission = submit_to is not None and submit_to in down
    if not sources and not submission:
        return None
    return {"sources": sources, "submission": submission}
