"""Objectives per bus service: set, cleared and listed (the settings' defaults hold otherwise).

An objective is an availability (percent of forwarded calls that must not fail on the
provider's side) and a latency (percent of forwarded calls within ``latency_ms``); both are
judged over 30 days (see :mod:`dargah.bus.slo`). Every change is an audit entry.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from dargah.core.clock import now_rfc3339
from dargah.core.errors import BadRequest, NotFound
from dargah.registry import audit
from dargah.registry.audit import Action
from dargah.store.tables import service_objectives, services


def _check(availability: float, latency_ms: float, latency_percent: float) -> None:
    if not 50 <= availability < 100:
        raise BadRequest(
            "availability must be at least 50 and below 100 (percent)",
            "هدف دسترس‌پذیری باید از ۵۰ تا کمتر از ۱۰۰ درصد باشد",
        )
    if not 1 <= latency_ms <= 600_000:
        raise BadRequest(
            "latency_ms must be 1 to 600000", "هدف تأخیر باید از ۱ تا ۶۰۰٬۰۰۰ میلی‌ثانیه باشد"
        )
    if not 50 <= latency_percent < 100:
        raise BadRequest(
            "latency_percent must be at least 50 and below 100",
            "سهم فراخوانی‌های زیر هدف تأخیر باید از ۵۰ تا کمتر از ۱۰۰ درصد باشد",
        )


def get_objective(conn: Connection, service_id: str) -> dict[str, Any] | None:
    row = (
        conn.execute(
            select(service_objectives).where(service_objectives.c.service_id == service_id)
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def set_objective(
    conn: Connection,
    service_id: str,
    availability: float,
    latency_ms: float,
    latency_percent: float,
    actor: str,
) -> dict[str, Any]:
    """Set a service's objectives (the service must exist)."""
    if conn.execute(select(services.c.id).where(services.c.id == service_id)).first() is None:
        raise NotFound(f"no bus service {service_id}", "چنین خدمتی در گذرگاه نیست")
    _check(availability, latency_ms, latency_percent)
    before = get_objective(conn, service_id)
    values = {
        "availability": float(availability),
        "latency_ms": float(latency_ms),
        "latency_percent": float(latency_percent),
        "updated_at": now_rfc3339(),
        "updated_by": actor,
    }
    if before is None:
        conn.execute(insert(service_objectives).values(service_id=service_id, **values))
    else:
        conn.execute(
            update(service_objectives)
            .where(service_objectives.c.service_id == service_id)
            .values(**values)
        )
    audit.record(
        conn,
        actor,
        Action.SERVICE_UPDATE,
        service_id,
        None if before is None else {"objectives": _public(before)},
        {"objectives": _public(values)},
        bump=False,
    )
    after = get_objective(conn, service_id)
    assert after is not None
    return after


def clear_objective(conn: Connection, service_id: str, actor: str) -> None:
    """Back to the defaults."""
    before = get_objective(conn, service_id)
    if before is None:
        raise NotFound(f"{service_id} has no objectives of its own", "این خدمت هدف جداگانه‌ای ندارد")
    conn.execute(delete(service_objectives).where(service_objectives.c.service_id == service_id))
    audit.record(
        conn,
        actor,
        Action.SERVICE_UPDATE,
        service_id,
        {"objectives": _public(before)},
        {"objectives": None},
        bump=False,
    )


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("availability", "latency_ms", "latency_percent")}
