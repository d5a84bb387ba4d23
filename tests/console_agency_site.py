"""Data for the agency self-service and oversight tests: catalogue cards of two agencies that
look like duplicates, complaints routed to each, and helpers to read what the pages wrote."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, insert, select

from dargah.registry.catalogue import import_catalogue
from dargah.store.people_tables import complaints
from dargah.store.tables import audit_log, public_services
from tests.harness import OTHER_LEGAL_ID, PROVIDER_LEGAL_ID, SUBJECT, World

PROV_CARD = "10000000001"
OTHER_CARD = "20000000002"
TITLE = "صدور گواهی عدم سوء پیشینه کیفری"


def _card(service_id: str, legal_id: str, title: str) -> dict[str, Any]:
    return {
        "service_id": service_id,
        "agency_legal_id": legal_id,
        "title_fa": title,
        "description_fa": "گواهی برای استخدام و سفر",
        "channels": ["online"],
        "steps": {"apply_online": True},
        "documents": [],
        "status": "active",
        "declared_level": 3,
    }


def add_cards_and_complaints(w: World) -> dict[str, Any]:
    """Two agencies' cards with the same title (a duplicate candidate) and one complaint each."""
    doc = {
        "services": [
            _card(PROV_CARD, PROVIDER_LEGAL_ID, TITLE),
            _card(OTHER_CARD, OTHER_LEGAL_ID, TITLE),
        ]
    }
    path = w.settings.home / "seed-catalogue.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    report = import_catalogue(w.engine, [path], actor="test", instance=w.instance)
    assert report.written, [str(p) for p in report.errors]
    ids: dict[str, Any] = {}
    with w.engine.begin() as conn:
        for name, card, legal_id in (
            ("prov_complaint", PROV_CARD, PROVIDER_LEGAL_ID),
            ("other_complaint", OTHER_CARD, OTHER_LEGAL_ID),
        ):
            result = conn.execute(
                insert(complaints).values(
                    tracking_code=f"C-{card[:6]}",
                    national_code=SUBJECT,
                    service_id=card,
                    member_id=w.member(legal_id),
                    text="پاسخی نگرفتم",
                    status="open",
                    created_at="2025-03-01T10:00:00Z",
                    updated_at="2025-03-01T10:00:00Z",
                )
            )
            ids[name] = int(result.inserted_primary_key[0])  # type: ignore[index]
    return ids


def complaint(w: World, number: int) -> dict[str, Any]:
    with w.engine.connect() as conn:
        row = conn.execute(select(complaints).where(complaints.c.id == number)).mappings().one()
        return dict(row)


def card_count(w: World) -> int:
    with w.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(public_services)).scalar_one())


def card_row(w: World, service_id: str) -> dict[str, Any] | None:
    with w.engine.connect() as conn:
        q = select(public_services).where(public_services.c.service_id == service_id)
        row = conn.execute(q).mappings().first()
        return dict(row) if row else None


def audit_actions(w: World, actor: str) -> list[str]:
    with w.engine.connect() as conn:
        q = select(audit_log.c.action).where(audit_log.c.actor == actor)
        return [str(a) for a in conn.execute(q.order_by(audit_log.c.id)).scalars()]
