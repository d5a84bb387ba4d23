"""Incidents: opened by the bus's monitor when a cause keeps failing, followed up by people.

One incident per **cause** (a provider host): the ``open_key`` column holds the cause while
the incident is open (unique) and is cleared when it resolves, so any number of bus
processes can try to open it and exactly one succeeds. Every other change is conditional too
(``WHERE state = 'open'``, ``WHERE revision = r``): the process whose change took effect
writes the timeline entry, the outage span and the alert in the same transaction, so each
exists once. A cause failing again within the reopen window reopens the same incident.

The timeline (opened, updated, reopened, resolved, alerts sent, notes, owner) is in
``incident_events``; the spans of downtime in ``incident_outages``; the alerts to send in
``incident_alerts`` (see :mod:`dargah.bus.alerts`).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from dargah.core.clock import now_rfc3339, rfc3339
from dargah.core.errors import BadRequest, Conflict, NotFound
from dargah.core.jalali import format_datetime
from dargah.registry import audit
from dargah.registry.audit import Action
from dargah.store.tables import (
    incident_alerts,
    incident_events,
    incident_outages,
    incidents,
    outbox,
)


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def services_of(incident: dict[str, Any]) -> list[str]:
    """The bus services an incident takes down (older incidents: their one service)."""
    raw = incident.get("services")
    if isinstance(raw, list):
        return [str(x) for x in raw]
    return list(json.loads(raw)) if raw else [incident["service_id"]]


def _shown(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["services"] = services_of(out)
    return out


def open_for_cause(conn: Connection, cause: str) -> dict[str, Any] | None:
    row = conn.execute(select(incidents).where(incidents.c.open_key == cause)).mappings().first()
    return dict(row) if row else None


def latest_for_cause(conn: Connection, cause: str) -> dict[str, Any] | None:
    row = (
        conn.execute(
            select(incidents)
            .where(incidents.c.cause == cause)
            .order_by(incidents.c.id.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def _alert(conn: Connection, incident_id: int, kind: str, revision: int) -> None:
    conn.execute(
        insert(incident_alerts).values(
            incident_id=incident_id, kind=kind, revision=revision, created_at=now_rfc3339()
        )
    )


def open_cause(
    conn: Connection,
    cause: str,
    provider: str,
    services: list[str],
    started_at: str,
    summary: str,
    summary_fa: str,
    reopen_seconds: float,
) -> dict[str, Any] | None:
    """Open (or reopen, within the window) the incident of ``cause``; None if another process
    did first or it is open already."""
    now = now_rfc3339()
    latest = latest_for_cause(conn, cause)
    if latest is not None and latest["state"] == "open":
        return None
    if (
        latest is not None
        and latest["resolved_at"]
        and _parse(now) - _parse(latest["resolved_at"]) <= timedelta(seconds=reopen_seconds)
    ):
        revision = int(latest["revision"]) + 1
        try:
            with conn.begin_nested():
                done = conn.execute(
                    update(incidents)
                    .where(incidents.c.id == latest["id"], incidents.c.state == "resolved")
                    .values(
                        state="open",
                        open_key=cause,
                        failing_since=now,
                        resolved_at=None,
                        recovered_at=None,
                        resolution=None,
                        revision=revision,
                        services=json.dumps(sorted(set(services) | set(services_of(latest)))),
                        summary=summary,
                        summary_fa=summary_fa,
                    )
                ).rowcount
        except IntegrityError:
            return None
        if done != 1:
            return None
        iid = int(latest["id"])
        event(conn, iid, "monitor", "reopened", "دوباره از دسترس خارج شد: " + summary_fa)
        conn.execute(insert(incident_outages).values(incident_id=iid, started_at=started_at))
        _alert(conn, iid, "firing", revision)
        return get_incident(conn, iid)
    row: dict[str, Any] = {
        "service_id": services[0],
        "provider": provider[:120],
        "kind": "down",
        "state": "open",
        "open_key": cause,
        "opened_at": now,
        "resolved_at": None,
        "recovered_at": None,
        "owner": None,
        "summary": summary,
        "resolution": None,
        "cause": cause,
        "services": json.dumps(sorted(services)),
        "summary_fa": summary_fa,
        "started_at": started_at,
        "failing_since": now,
        "revision": 0,
    }
    try:
        with conn.begin_nested():
            iid = int(conn.execute(insert(incidents).values(**row)).inserted_primary_key[0])
    except IntegrityError:
        return None
    event(conn, iid, "monitor", "opened", summary_fa)
    conn.execute(insert(incident_outages).values(incident_id=iid, started_at=started_at))
    _alert(conn, iid, "firing", 0)
    return get_incident(conn, iid)


def add_services(
    conn: Connection, incident: dict[str, Any], more: list[str], summary: str, summary_fa: str
) -> bool:
    """More of the cause's services fail: list them (an update, alerted once)."""
    revision = int(incident["revision"]) + 1
    listed = sorted(set(services_of(incident)) | set(more))
    done = conn.execute(
        update(incidents)
        .where(
            incidents.c.id == incident["id"],
            incidents.c.state == "open",
            incidents.c.revision == incident["revision"],
        )
        .values(
            services=json.dumps(listed), revision=revision, summary=summary, summary_fa=summary_fa
        )
    ).rowcount
    if done != 1:
        return False
    event(conn, int(incident["id"]), "monitor", "updated", summary_fa)
    _alert(conn, int(incident["id"]), "firing", revision)
    return True


def recover(conn: Connection, incident: dict[str, Any], recovered_at: datetime) -> bool:
    """The cause has answered for long enough: resolve the incident (once, by one process)."""
    return _close(
        conn,
        int(incident["id"]),
        "monitor",
        "خدمت‌ها از " + _fa_time(recovered_at) + " دوباره پاسخ می‌دهند؛ رخداد خودکار بسته شد.",
        rfc3339(recovered_at),
    )


def _fa_time(moment: datetime) -> str:
    return format_datetime(moment)


def _close(conn: Connection, incident_id: int, actor: str, resolution: str, ended: str) -> bool:
    current = conn.execute(
        select(incidents.c.revision).where(incidents.c.id == incident_id)
    ).scalar_one()
    revision = int(current) + 1
    done = conn.execute(
        update(incidents)
        .where(incidents.c.id == incident_id, incidents.c.state == "open")
        .values(
            state="resolved",
            open_key=None,
            resolved_at=now_rfc3339(),
            recovered_at=ended,
            resolution=resolution,
            revision=revision,
        )
    ).rowcount
    if done != 1:
        return False
    conn.execute(
        update(incident_outages)
        .where(incident_outages.c.incident_id == incident_id, incident_outages.c.ended_at.is_(None))
        .values(ended_at=ended)
    )
    event(conn, incident_id, actor, "resolved", resolution)
    _alert(conn, incident_id, "resolved", revision)
    return True


def event(conn: Connection, incident_id: int, actor: str, kind: str, text: str) -> None:
    conn.execute(
        insert(incident_events).values(
            incident_id=incident_id, ts=now_rfc3339(), actor=actor, kind=kind, text=text[:4000]
        )
    )


def get_incident(conn: Connection, incident_id: int) -> dict[str, Any]:
    row = conn.execute(select(incidents).where(incidents.c.id == incident_id)).mappings().first()
    if row is None:
        raise NotFound(f"no incident {incident_id}", "رخدادی با این شماره یافت نشد")
    out = _shown(row)
    out["outages"] = [
        dict(o)
        for o in conn.execute(
            select(incident_outages.c.started_at, incident_outages.c.ended_at)
            .where(incident_outages.c.incident_id == incident_id)
            .order_by(incident_outages.c.id)
        ).mappings()
    ]
    out["timeline"] = [
        dict(e)
        for e in conn.execute(
            select(incident_events)
            .where(incident_events.c.incident_id == incident_id)
            .order_by(incident_events.c.id)
        ).mappings()
    ]
    return out


def list_incidents(conn: Connection, state: str | None = None) -> list[dict[str, Any]]:
    q = select(incidents).order_by(incidents.c.id.desc()).limit(500)
    if state:
        q = q.where(incidents.c.state == state)
    return [_shown(r) for r in conn.execute(q).mappings()]


def add_note(conn: Connection, incident_id: int, actor: str, text: str) -> dict[str, Any]:
    if not text.strip():
        raise BadRequest("a note needs text", "یادداشت خالی است")
    get_incident(conn, incident_id)
    event(conn, incident_id, actor, "note", text.strip())
    return get_incident(conn, incident_id)


def set_owner(conn: Connection, incident_id: int, actor: str, owner: str) -> dict[str, Any]:
    before = get_incident(conn, incident_id)
    conn.execute(update(incidents).where(incidents.c.id == incident_id).values(owner=owner))
    event(conn, incident_id, actor, "owner", owner)
    audit.record(
        conn,
        actor,
        Action.INCIDENT_UPDATE,
        f"incident {incident_id}",
        {"owner": before["owner"]},
        {"owner": owner},
        bump=False,
    )
    return get_incident(conn, incident_id)


def resolve(conn: Connection, incident_id: int, actor: str, resolution: str) -> dict[str, Any]:
    """Close the incident by hand, with its resolution (alerted as resolved, once)."""
    before = get_incident(conn, incident_id)
    if before["state"] != "open" or not _close(conn, incident_id, actor, resolution, now_rfc3339()):
        raise Conflict(
            f"incident {incident_id} is already resolved", "این رخداد پیش‌تر بسته شده است"
        )
    audit.record(
        conn,
        actor,
        Action.INCIDENT_UPDATE,
        f"incident {incident_id}",
        {"state": "open"},
        {"state": "resolved", "resolution": resolution},
        bump=False,
    )
    return get_incident(conn, incident_id)


def queue_message(
    conn: Connection, channel: str, to: str, subject: str, text: str, code: str | None = None
) -> None:
    """A message for the outbox (e-mail or SMS); on sandbox instances nothing leaves it."""
    conn.execute(
        insert(outbox).values(
            channel=channel,
            recipient=to,
            subject=subject,
            text=text,
            code=code,
            sent_at=now_rfc3339(),
        )
    )


def outbox_messages(conn: Connection, channel: str | None = None) -> list[dict[str, Any]]:
    q = select(outbox).order_by(outbox.c.id)
    if channel:
        q = q.where(outbox.c.channel == channel)
    return [dict(r) for r in conn.execute(q).mappings()]
