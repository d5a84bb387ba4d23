"""The portal's own file on each citizen: consents, applications and their timeline, ratings
and complaints. Every read takes the citizen's national code, so no query can return
another citizen's rows.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from dargah.core.persian import to_persian_digits
from dargah.store.people_tables import (
    application_events,
    applications,
    complaints,
    consents,
    ratings,
)
from dargah.store.tables import outbox

FINAL = {"approved": True, "rejected": True, "completed": True, "done": True, "issued": True}
STATUS_FA = {
    "received": "دریافت شد",
    "under-review": "در حال بررسی",
    "approved": "تأیید شد",
    "rejected": "رد شد",
    "completed": "انجام شد",
}
COMPLAINT_FA = {
    "open": "ثبت شد",
    "in-progress": "در حال رسیدگی",
    "answered": "پاسخ داده شد",
    "closed": "بسته شد",
}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_tracking_code() -> str:
    return str(10**11 + secrets.randbelow(9 * 10**11))


def record_consent(
    engine: Engine, national_code: str, service_id: str, purpose: str, sources: list[dict[str, Any]]
) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                insert(consents).values(
                    national_code=national_code,
                    service_id=service_id,
                    purpose=purpose,
                    sources=json.dumps(sources, ensure_ascii=False),
                    given_at=now_iso(),
                )
            ).inserted_primary_key[0]
        )


def latest_consent(engine: Engine, national_code: str, service_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(consents)
            .where(consents.c.national_code == national_code, consents.c.service_id == service_id)
            .order_by(consents.c.id.desc())
            .limit(1)
        ).first()
    if row is None:
        return None
    return {"id": row.id, "given_at": row.given_at, "sources": json.loads(row.sources)}


def create_application(conn: Connection, **values: Any) -> dict[str, Any]:
    now = now_iso()
    status = values.get("status", "received")
    row = {
        "tracking_code": values.get("tracking_code") or new_tracking_code(),
        "national_code": values["national_code"],
        "service_id": values["service_id"],
        "submit_to": values.get("submit_to"),
        "agency_ref": values.get("agency_ref"),
        "channel": values.get("channel", "portal"),
        "status": status,
        "status_fa": values.get("status_fa") or STATUS_FA.get(status, status),
        "data": json.dumps(values.get("data") or {}, ensure_ascii=False),
        "sources": json.dumps(values.get("sources") or [], ensure_ascii=False),
        "created_at": values.get("created_at") or now,
        "updated_at": now,
        "completed_at": now if status in FINAL else None,
    }
    app_id = conn.execute(insert(applications).values(**row)).inserted_primary_key[0]
    conn.execute(
        insert(application_events).values(
            application_id=app_id,
            ts=row["created_at"],
            status=status,
            status_fa=row["status_fa"],
            note=values.get("note"),
        )
    )
    return {"id": app_id, **row}


def set_status(conn: Connection, app: dict[str, Any], status: str, status_fa: str) -> bool:
    """Move an application on (adding to its timeline); False when nothing changed."""
    if status == app["status"]:
        return False
    now = now_iso()
    conn.execute(
        update(applications)
        .where(applications.c.id == app["id"])
        .values(
            status=status,
            status_fa=status_fa,
            updated_at=now,
            completed_at=now if status in FINAL else None,
        )
    )
    conn.execute(
        insert(application_events).values(
            application_id=app["id"], ts=now, status=status, status_fa=status_fa, note=None
        )
    )
    return True


def notify(conn: Connection, mobile: str | None, text: str) -> None:
    """An SMS to the citizen (through the outbox), digits in Persian."""
    text = to_persian_digits(text)
    if mobile:
        conn.execute(
            insert(outbox).values(
                channel="sms",
                recipient=mobile,
                subject=None,
                text=text,
                code=None,
                sent_at=now_iso()[:19] + "Z",
            )
        )


def applications_of(conn: Connection, national_code: str) -> list[dict[str, Any]]:
    q = (
        select(applications)
        .where(applications.c.national_code == national_code)
        .order_by(applications.c.id.desc())
    )
    return [dict(r._mapping) for r in conn.execute(q)]


def application_of(conn: Connection, national_code: str, tracking: str) -> dict[str, Any] | None:
    row = conn.execute(
        select(applications).where(
            applications.c.national_code == national_code,
            applications.c.tracking_code == tracking,
        )
    ).first()
    if row is None:
        return None
    app = dict(row._mapping)
    app["data"] = json.loads(app["data"])
    app["sources"] = json.loads(app["sources"])
    app["timeline"] = [
        dict(e._mapping)
        for e in conn.execute(
            select(application_events)
            .where(application_events.c.application_id == app["id"])
            .order_by(application_events.c.id)
        )
    ]
    r = conn.execute(select(ratings).where(ratings.c.application_id == app["id"])).first()
    app["rating"] = dict(r._mapping) if r else None
    return app


def rate(conn: Connection, app: dict[str, Any], score: int, comment: str | None) -> bool:
    """Store the rating of a completed application; False if it was already rated."""
    if conn.execute(select(ratings.c.id).where(ratings.c.application_id == app["id"])).first():
        return False
    conn.execute(
        insert(ratings).values(
            application_id=app["id"],
            national_code=app["national_code"],
            service_id=app["service_id"],
            score=score,
            comment=comment,
            created_at=now_iso(),
        )
    )
    return True


def file_complaint(conn: Connection, **values: Any) -> str:
    tracking = new_tracking_code()
    now = now_iso()
    conn.execute(
        insert(complaints).values(
            tracking_code=tracking,
            national_code=values["national_code"],
            service_id=values["service_id"],
            member_id=values["member_id"],
            application_id=values.get("application_id"),
            text=values["text"],
            status="open",
            created_at=now,
            updated_at=now,
        )
    )
    return tracking


def complaints_of(conn: Connection, national_code: str) -> list[dict[str, Any]]:
    q = (
        select(complaints)
        .where(complaints.c.national_code == national_code)
        .order_by(complaints.c.id.desc())
    )
    return [
        dict(r._mapping) | {"status_fa": COMPLAINT_FA.get(r.status, r.status)}
        for r in conn.execute(q)
    ]
