"""What was observed of each public service: the evidence its verified level rests on.

Gathered from the database in a few grouped queries (smartness.md, catalogue.md):

- online applications and completions: the agency's reported ``applications_online`` and
  ``completed_online`` summed over its reports, plus the platform's own applications (portal
  and proactive, table ``applications``) and those of them with a ``completed_at``;
- bus calls with outcome ``ok`` to each bus service in the card's ``data_sources``
  (``message_log``);
- events delivered (``deliveries.status = 'delivered'``) on the card's ``proactive_topics``;
- a once-only finding: a document the citizen must bring (source ``citizen``) whose
  ``data_item`` an active bus service supplies;
- a direct-connection finding: the card declares ``data_sources`` and had online
  applications, yet none of its data sources was ever called over the bus;
- ratings of completed applications made in the last 90 days (table ``ratings``);
- a confirmed duplicate: a confirmed pair in ``duplicate_decisions`` where this service is the
  greater ID (the first of a pair still counts once).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, func, select

from dargah.core.clock import rfc3339
from dargah.registry.catalogue.exporter import supplied_items
from dargah.store.people_tables import applications, ratings
from dargah.store.tables import (
    deliveries,
    duplicate_decisions,
    message_log,
    public_service_reports,
    public_services,
    subscriptions,
)

RATING_WINDOW_DAYS = 90


@dataclass(frozen=True)
class Evidence:
    """What was observed of one public service."""

    service_id: str
    agency_legal_id: str = ""
    data_sources: tuple[str, ...] = ()
    proactive_topics: tuple[str, ...] = ()
    reported_applications_online: int = 0
    reported_completed_online: int = 0
    portal_applications: int = 0
    portal_completed: int = 0
    bus_calls: Mapping[str, int] = field(default_factory=dict)
    events_delivered: int = 0
    once_only_items: tuple[str, ...] = ()
    ratings: int = 0
    satisfied_ratings: int = 0
    duplicate_of: str | None = None

    @property
    def applications_online(self) -> int:
        return self.portal_applications + self.reported_applications_online

    @property
    def completed_online(self) -> int:
        return self.portal_completed + self.reported_completed_online

    @property
    def uncalled_sources(self) -> tuple[str, ...]:
        """Declared data sources with no ``ok`` bus call."""
        return tuple(s for s in self.data_sources if not self.bus_calls.get(s))

    @property
    def total_bus_calls(self) -> int:
        return sum(self.bus_calls.get(s, 0) for s in self.data_sources)

    @property
    def once_only(self) -> bool:
        return bool(self.once_only_items)

    @property
    def direct_connection(self) -> bool:
        """Declared data sources, online applications, and not one bus call to them."""
        return (
            bool(self.data_sources) and self.applications_online > 0 and not (self.total_bus_calls)
        )

    @property
    def satisfaction(self) -> float | None:
        """Share of ratings of 4 or 5 (0..1), ``None`` without ratings."""
        return self.satisfied_ratings / self.ratings if self.ratings else None

    @property
    def duplicate(self) -> bool:
        return self.duplicate_of is not None


def _list(text: str | None) -> list[Any]:
    value = json.loads(text) if text else None
    return value if isinstance(value, list) else []


def _once_only(documents: list[Any], supplied: set[str]) -> tuple[str, ...]:
    return tuple(
        sorted(
            {
                d["data_item"]
                for d in documents
                if isinstance(d, dict)
                and d.get("source") == "citizen"
                and d.get("data_item") in supplied
            }
        )
    )


def _reported(conn: Connection) -> dict[str, tuple[int, int]]:
    r = public_service_reports.c
    q = select(
        r.service_id,
        func.coalesce(func.sum(r.applications_online), 0),
        func.coalesce(func.sum(r.completed_online), 0),
    ).group_by(r.service_id)
    return {sid: (int(apps), int(done)) for sid, apps, done in conn.execute(q)}


def _calls(conn: Connection, wanted: set[str]) -> dict[str, int]:
    if not wanted:
        return {}
    m = message_log.c
    q = (
        select(m.service, func.count())
        .where(m.outcome == "ok", m.service.in_(sorted(wanted)))
        .group_by(m.service)
    )
    return {svc: int(n) for svc, n in conn.execute(q)}


def _delivered(conn: Connection, wanted: set[str]) -> dict[str, int]:
    if not wanted:
        return {}
    q = (
        select(subscriptions.c.topic_id, func.count())
        .select_from(
            deliveries.join(subscriptions, deliveries.c.subscription_id == subscriptions.c.id)
        )
        .where(deliveries.c.status == "delivered", subscriptions.c.topic_id.in_(sorted(wanted)))
        .group_by(subscriptions.c.topic_id)
    )
    return {topic: int(n) for topic, n in conn.execute(q)}


def _duplicates(conn: Connection) -> dict[str, str]:
    d = duplicate_decisions.c
    q = select(d.service_a, d.service_b).where(d.status == "confirmed")
    out: dict[str, str] = {}
    for a, b in conn.execute(q):
        first, later = sorted((a, b))
        out.setdefault(later, first)
    return out


def _applications(conn: Connection) -> dict[str, tuple[int, int]]:
    a = applications.c
    q = select(a.service_id, func.count(), func.count(a.completed_at)).group_by(a.service_id)
    return {sid: (int(n), int(done)) for sid, n, done in conn.execute(q)}


def _ratings(conn: Connection, since: datetime) -> dict[str, tuple[int, int]]:
    r = ratings.c
    q = (
        select(r.service_id, func.count(), func.sum(case((r.score >= 4, 1), else_=0)))
        .where(r.created_at >= rfc3339(since))
        .group_by(r.service_id)
    )
    return {sid: (int(n), int(ok or 0)) for sid, n, ok in conn.execute(q)}


def gather(conn: Connection, now: datetime) -> dict[str, Evidence]:
    """The evidence of every stored public service, by service ID.

    ``now`` bounds the rating window (the last 90 days).
    """
    p = public_services.c
    cards = conn.execute(
        select(p.service_id, p.agency_legal_id, p.documents, p.data_sources, p.proactive_topics)
    ).all()
    supplied = supplied_items(conn)
    reported = _reported(conn)
    sources = {sid: tuple(map(str, _list(ds))) for sid, _a, _d, ds, _t in cards}
    topics = {sid: tuple(map(str, _list(t))) for sid, _a, _d, _ds, t in cards}
    calls = _calls(conn, {s for v in sources.values() for s in v})
    delivered = _delivered(conn, {t for v in topics.values() for t in v})
    dups = _duplicates(conn)
    portal = _applications(conn)
    rated = _ratings(conn, now - timedelta(days=RATING_WINDOW_DAYS))
    out: dict[str, Evidence] = {}
    for sid, agency, documents, _ds, _t in cards:
        apps, done = reported.get(sid, (0, 0))
        portal_apps, portal_done = portal.get(sid, (0, 0))
        n_ratings, satisfied = rated.get(sid, (0, 0))
        out[sid] = Evidence(
            service_id=sid,
            agency_legal_id=agency,
            data_sources=sources[sid],
            proactive_topics=topics[sid],
            reported_applications_online=apps,
            reported_completed_online=done,
            portal_applications=portal_apps,
            portal_completed=portal_done,
            bus_calls={s: calls.get(s, 0) for s in sources[sid]},
            events_delivered=sum(delivered.get(t, 0) for t in topics[sid]),
            once_only_items=_once_only(_list(documents), supplied),
            ratings=n_ratings,
            satisfied_ratings=satisfied,
            duplicate_of=dups.get(sid),
        )
    return out
