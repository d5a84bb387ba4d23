"""Quotas: a client-wide rate and per-service rates; a client has none until one is set."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from dargah.core.clock import now_rfc3339
from dargah.core.errors import BadRequest, NotFound
from dargah.core.identifiers import parse_service_id
from dargah.registry import audit
from dargah.registry.audit import Action
from dargah.registry.members import get_subsystem
from dargah.store.tables import quotas

MIN_RATE = 0.001
"""The smallest rate a quota may set: one call in 1,000 seconds."""


def set_quota(
    conn: Connection,
    client_id: str,
    per_second: float,
    actor: str,
    *,
    service_id: str | None = None,
    burst: float | None = None,
) -> dict[str, Any]:
    get_subsystem(conn, client_id)
    if service_id:
        parse_service_id(service_id)
    if not (math.isfinite(per_second) and per_second >= MIN_RATE) or (
        burst is not None and not (math.isfinite(burst) and burst >= 1)
    ):
        raise BadRequest(
            f"the rate must be at least {MIN_RATE} a second and the burst at least 1",
            "نرخ باید دست‌کم یک درخواست در هزار ثانیه و ظرفیت دست‌کم ۱ باشد",
        )
    key = service_id or ""
    row = {
        "client_id": client_id,
        "service_id": key,
        "per_second": float(per_second),
        "burst": float(burst if burst is not None else max(1.0, per_second)),
        "updated_at": now_rfc3339(),
    }
    where = (quotas.c.client_id == client_id) & (quotas.c.service_id == key)
    before = conn.execute(select(quotas).where(where)).mappings().first()
    if before is None:
        conn.execute(insert(quotas).values(**row))
    else:
        conn.execute(update(quotas).where(where).values(**row))
    audit.record(
        conn,
        actor,
        Action.QUOTA_SET,
        f"{client_id} {key}".strip(),
        dict(before) if before else None,
        row,
    )
    return row


def remove_quota(
    conn: Connection, client_id: str, actor: str, service_id: str | None = None
) -> None:
    key = service_id or ""
    where = (quotas.c.client_id == client_id) & (quotas.c.service_id == key)
    before = conn.execute(select(quotas).where(where)).mappings().first()
    if before is None:
        raise NotFound("no such quota", "سهمیه‌ای یافت نشد")
    conn.execute(delete(quotas).where(where))
    audit.record(conn, actor, Action.QUOTA_REMOVE, f"{client_id} {key}".strip(), dict(before), None)


def list_quotas(conn: Connection, client_id: str | None = None) -> list[dict[str, Any]]:
    q = select(quotas).order_by(quotas.c.client_id, quotas.c.service_id)
    if client_id:
        q = q.where(quotas.c.client_id == client_id)
    return [dict(r) for r in conn.execute(q).mappings()]
