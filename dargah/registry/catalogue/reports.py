"""An agency's own figures for one public service and one period (catalogue.md, REPORT).

Agencies send them between catalogue imports, one period at a time, through the management
API. A period's report replaces the one stored under the same label; the change is audited.
The fields are read with the import's own rules, so a report sent here is the same as one
carried by a card.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select

from dargah.core.errors import BadRequest, NotFound
from dargah.core.persian import to_latin_digits
from dargah.registry import audit
from dargah.registry.audit import Action
from dargah.registry.catalogue import coerce
from dargah.registry.catalogue.models import REPORT_COUNTS
from dargah.store.tables import public_service_reports, public_services

FIELDS = (*REPORT_COUNTS, "satisfaction_pct")


def _clean(period: str, figures: dict[str, Any]) -> dict[str, Any]:
    label = to_latin_digits(period.strip())
    if not label or len(label) > 64:
        raise BadRequest("period: a label of 1 to 64 characters", "برچسب دوره نامعتبر است")
    unknown = sorted(set(figures) - set(FIELDS) - {"period"})
    if unknown:
        raise BadRequest(f"{unknown[0]}: not a REPORT field", f"{unknown[0]} از فیلدهای گزارش نیست")
    out: dict[str, Any] = {"period": label}
    for key in FIELDS:
        try:
            if key == "satisfaction_pct":
                out[key] = coerce.number(figures.get(key), 0, 100)
            else:
                out[key] = coerce.integer(figures.get(key))
        except coerce.Invalid as exc:
            raise BadRequest(f"{key}: {exc.reason}", exc.reason_fa) from None
    if all(out[k] is None for k in FIELDS):
        raise BadRequest("a report needs at least one figure", "گزارش دست‌کم یک رقم لازم دارد")
    return out


def report_dict(row: Any) -> dict[str, Any]:
    return {"service_id": row.service_id, "period": row.period} | {
        k: getattr(row, k) for k in FIELDS
    }


def list_reports(conn: Connection, service_id: str) -> list[dict[str, Any]]:
    """A service's reports in the order the agency gave them."""
    _exists(conn, service_id)
    r = public_service_reports.c
    q = select(public_service_reports).where(r.service_id == service_id).order_by(r.position)
    return [report_dict(row) for row in conn.execute(q)]


def _exists(conn: Connection, service_id: str) -> None:
    p = public_services.c
    if conn.execute(select(p.service_id).where(p.service_id == service_id)).first() is None:
        raise NotFound(f"no public service {service_id}", f"خدمت {service_id} یافت نشد")


def put_report(
    conn: Connection, service_id: str, period: str, figures: dict[str, Any], actor: str
) -> tuple[dict[str, Any], bool]:
    """Store the service's report for ``period``; returns it and whether it is new."""
    _exists(conn, service_id)
    rep = _clean(period, figures)
    r = public_service_reports.c
    where = (r.service_id == service_id) & (r.period == rep["period"])
    before = conn.execute(select(public_service_reports).where(where)).first()
    if before is not None:
        position = before.position
        extra = before.extra
        conn.execute(delete(public_service_reports).where(where))
    else:
        last = conn.execute(select(func.max(r.position)).where(r.service_id == service_id))
        highest = last.scalar()
        position = 0 if highest is None else int(highest) + 1
        extra = "{}"
    year, quarter = coerce.jalali_period(rep["period"])
    conn.execute(
        insert(public_service_reports).values(
            service_id=service_id,
            position=position,
            jalali_year=year,
            jalali_quarter=quarter,
            extra=extra,
            **rep,
        )
    )
    after = {"service_id": service_id, **rep}
    audit.record(
        conn,
        actor,
        Action.CATALOGUE_REPORT,
        f"{service_id}/{rep['period']}",
        None if before is None else json.loads(json.dumps(report_dict(before), default=str)),
        after,
        bump=False,
    )
    return after, before is None
