"""Telling citizens without being asked: each piece of news once, by SMS and on their pages.

News is a status change of an application, a service an agency opened for the citizen by
itself (a proactive service, such as the newborn package), or a source failing for a service
the citizen has an open application on. Each has a ``key`` naming the news itself
(``status:<tracking>:<status>``, ``opened:<tracking>``, ``incident:<id>:<tracking>``); the
``notifications`` table keeps one row per citizen and key, so the SMS goes out once however
many processes, page views or watcher rounds notice the same news.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from dargah.core.persian import to_persian_digits
from dargah.portal.records import now_iso
from dargah.store.people_tables import applications, notifications, otp_codes
from dargah.store.tables import outbox

PREFIX = "درگاه ملی خدمات: "
KINDS = ("status", "opened", "incident")


def mobile_of(conn: Connection, national_code: str) -> str | None:
    """The mobile the citizen last signed in with (verified then by the operator's inquiry)."""
    found = conn.execute(
        select(otp_codes.c.mobile)
        .where(otp_codes.c.national_code == national_code)
        .order_by(otp_codes.c.id.desc())
        .limit(1)
    ).scalar()
    return str(found) if found else None


def send(
    engine: Engine,
    national_code: str,
    key: str,
    kind: str,
    text: str,
    *,
    tracking_code: str | None = None,
    mobile: str | None = None,
) -> bool:
    """Record the news for the citizen's pages and send it by SMS; False when it was sent
    already (the same ``key``)."""
    text = to_persian_digits(PREFIX + text)
    now = now_iso()
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(notifications).values(
                    national_code=national_code,
                    key=key[:200],
                    kind=kind,
                    tracking_code=tracking_code,
                    text=text,
                    created_at=now,
                    read_at=None,
                )
            )
            to = mobile or mobile_of(conn, national_code)
            if to:
                conn.execute(
                    insert(outbox).values(
                        channel="sms",
                        recipient=to,
                        subject=None,
                        text=text,
                        code=None,
                        sent_at=now[:19] + "Z",
                    )
                )
    except IntegrityError:
        return False
    return True


def status_changed(
    engine: Engine,
    national_code: str,
    tracking: str,
    status: str,
    status_fa: str,
    mobile: str | None,
) -> bool:
    return send(
        engine,
        national_code,
        f"status:{tracking}:{status}",
        "status",
        f"وضعیت تازه درخواست شما با کد رهگیری {tracking}: «{status_fa}».",
        tracking_code=tracking,
        mobile=mobile,
    )


def opened_for_you(
    engine: Engine, national_code: str, tracking: str, title: str, agency: str, mobile: str | None
) -> bool:
    return send(
        engine,
        national_code,
        f"opened:{tracking}",
        "opened",
        f"{agency} بدون درخواست شما «{title}» را برایتان آغاز کرد؛ کد رهگیری {tracking}.",
        tracking_code=tracking,
        mobile=mobile,
    )


def source_failing(
    engine: Engine,
    services: Mapping[str, dict[str, Any]],
    incident_id: int,
    affected: Iterable[str],
) -> int:
    """Tell every citizen with an open application on one of the ``affected`` public services
    (catalogue ids) that a source it needs is failing; the number of citizens told now."""
    wanted = sorted({sid for sid in affected if sid in services})
    if not wanted:
        return 0
    with engine.connect() as conn:
        open_apps = conn.execute(
            select(
                applications.c.national_code,
                applications.c.tracking_code,
                applications.c.service_id,
            ).where(applications.c.service_id.in_(wanted), applications.c.completed_at.is_(None))
        ).all()
    told = 0
    for national_code, tracking, sid in open_apps:
        title = services[sid].get("title_fa") or services[sid].get("title_en") or sid
        told += send(
            engine,
            national_code,
            f"incident:{incident_id}:{tracking}",
            "incident",
            f"سامانه‌ای که «{title}» به آن نیاز دارد اکنون از دسترس خارج است؛ درخواست شما با "
            f"کد رهگیری {tracking} محفوظ است و پس از رفع مشکل رسیدگی ادامه می‌یابد.",
            tracking_code=tracking,
        )
    return told


def affected_by(services: Mapping[str, dict[str, Any]], bus_service_id: str) -> list[str]:
    """The public services (catalogue ids) that fetch from or submit to a bus service."""
    return [
        sid
        for sid, card in services.items()
        if bus_service_id == card.get("submit_to")
        or bus_service_id in (card.get("data_source_ids") or [])
    ]


def recent(conn: Connection, national_code: str, limit: int = 20) -> list[dict[str, Any]]:
    q = (
        select(notifications)
        .where(notifications.c.national_code == national_code)
        .order_by(notifications.c.id.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in conn.execute(q)]


def unread(conn: Connection, national_code: str) -> int:
    q = (
        select(func.count())
        .select_from(notifications)
        .where(notifications.c.national_code == national_code, notifications.c.read_at.is_(None))
    )
    return int(conn.execute(q).scalar_one())


def mark_read(engine: Engine, national_code: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(notifications)
            .where(
                notifications.c.national_code == national_code, notifications.c.read_at.is_(None)
            )
            .values(read_at=now_iso())
        )
