"""Incidents: opened by the bus's monitor when a provider fails, followed up by people.

An incident has a timeline (opened, alerts sent, notes, owner changes,
resolution). At most one incident is open per service: the ``open_key``
column holds the service id while the incident is open (unique) and is cleared
when it is resolved, so any number of bus processes can try to open the same
incident and exactly one succeeds.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from dargah.core.clock import now_rfc3339
from dargah.core.errors import BadRequest, Conflict, NotFound
from dargah.registry import audit
from dargah.registry.audit import Action
from dargah.store.tables import incident_events, incidents, outbox


def open_incident(
    conn: Connection, service_id: str, provider: str, kind: str, summary: str
) -> dict[str, Any] | None:
    """Open an incident for a service, unless one is open already (then None)."""
    now = now_rfc3339()
    row: dict[str, Any] = {
        "service_id": service_id,
        "provider": provider,
        "kind": kind,
        "state": "open",
        "open_key": service_id,
        "opened_at": now,
        "resolved_at": None,
        "recovered_at": None,
        "owner": None,
        "summary": summary,
        "resolution": None,
    }
    try:
        with conn.begin_nested():
            row["id"] = conn.execute(insert(incidents).values(**row)).inserted_primary_key[0]
    except IntegrityError:
        return None
    event(conn, int(row["id"]), "monitor", "opened", summary)
    return row


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
    out = dict(row)
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
    return [dict(r) for r in conn.execute(q).mappings()]


def open_for(conn: Connection, service_id: str) -> dict[str, Any] | None:
    row = (
        conn.execute(select(incidents).where(incidents.c.open_key == service_id)).mappings().first()
    )
    return dict(row) if row else None


def note_state(conn: Connection, incident: dict[str, Any], healthy: bool) -> None:
    """Record on an open incident's timeline that its service recovered, or fails again."""
    recovered = incident["recovered_at"] is not None
    if healthy and not recovered:
        conn.execute(
            update(incidents)
            .where(incidents.c.id == incident["id"])
            .values(recovered_at=now_rfc3339())
        )
        event(
            conn, int(incident["id"]), "monitor", "recovered", "the service answers normally again"
        )
    elif not healthy and recovered:
        conn.execute(
            update(incidents).where(incidents.c.id == incident["id"]).values(recovered_at=None)
        )
        event(conn, int(incident["id"]), "monitor", "failing", "the service fails again")


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
    before = get_incident(conn, incident_id)
    if before["state"] != "open":
        raise Conflict(
            f"incident {incident_id} is already resolved", "این رخداد پیش‌تر بسته شده است"
        )
    conn.execute(
        update(incidents)
        .where(incidents.c.id == incident_id)
        .values(state="resolved", open_key=None, resolved_at=now_rfc3339(), resolution=resolution)
    )
    event(conn, incident_id, actor, "resolved", resolution)
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
