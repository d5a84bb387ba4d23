"""Building oversight's inputs for tests: agencies and cards, bus services, and what citizens did
(applications, ratings), written straight into the tables as the portal would."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from dargah.core.clock import rfc3339
from dargah.core.settings import Settings
from dargah.registry import members, services
from dargah.registry.catalogue import import_catalogue
from dargah.registry.instance import open_instance
from dargah.store.people_tables import applications, ratings
from dargah.store.tables import message_log, subsystems

SABT = "10100387143"
POST = "14003000014"
TAX = "14007650912"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
IDENTITY_SOURCE = "TEST/GOV/10100387143/sabt/person-inquiry.v1"
ADDRESS_SOURCE = "TEST/GOV/14003000014/post/address.v1"
_codes = itertools.count(1)
_seq = itertools.count(1)


def card(service_id: str, agency: str = SABT, **kw: Any) -> dict[str, Any]:
    """A card whose definition supports level 4, changed by ``kw``."""
    base: dict[str, Any] = {
        "service_id": service_id,
        "agency_legal_id": agency,
        "title_fa": f"خدمت {service_id}",
        "title_en": f"Service {service_id}",
        "description_fa": "شرح خدمت",
        "channels": ["online"],
        "steps": {
            "sign_in_online": True,
            "apply_online": True,
            "pay_online": None,
            "decision_online": True,
            "issue_online": True,
            "track_online": True,
        },
        "in_person_visits": 0,
        "paper_required": False,
        "documents": [],
        "data_sources": [],
        "status": "active",
    }
    return base | kw


AGENCIES = [
    {"legal_id": SABT, "name_fa": "سازمان ثبت احوال", "name_en": "Civil Registration"},
    {"legal_id": POST, "name_fa": "شرکت پست", "name_en": "Post"},
    {"legal_id": TAX, "name_fa": "سازمان امور مالیاتی", "name_en": "Tax"},
]


def make_instance(home: Path, cards: list[dict[str, Any]]) -> Engine:
    engine, _info, _token = open_instance(Settings(home=home, instance="TEST"))
    load_cards(engine, home, cards)
    return engine


def load_cards(engine: Engine, home: Path, cards: list[dict[str, Any]]) -> None:
    f = home / "cards.json"
    f.write_text(json.dumps({"agencies": AGENCIES, "services": cards}), encoding="utf-8")
    report = import_catalogue(engine, [f], actor="test", instance="TEST")
    assert report.written and not report.errors, report.problems


def add_bus_service(engine: Engine, service_id: str, supplies: list[str]) -> None:
    client = service_id.rsplit("/", 1)[0]
    with engine.begin() as conn:
        if conn.execute(select(subsystems.c.id).where(subsystems.c.id == client)).first() is None:
            members.add_subsystem(conn, client, "test")
        services.add_service(conn, service_id, "http://127.0.0.1:9/x", "test", supplies=supplies)


def add_application(
    conn: Connection,
    service_id: str,
    *,
    days_ago: float = 1,
    completed: bool = False,
    channel: str = "portal",
) -> int:
    at = rfc3339(NOW - timedelta(days=days_ago))
    result = conn.execute(
        insert(applications).values(
            tracking_code=f"T{next(_codes):012d}",
            national_code="0499370899",
            service_id=service_id,
            channel=channel,
            status="completed" if completed else "submitted",
            status_fa="انجام شد" if completed else "ثبت شد",
            data="{}",
            sources="[]",
            created_at=at,
            updated_at=at,
            completed_at=at if completed else None,
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def add_rating(conn: Connection, service_id: str, score: int, *, days_ago: float = 1) -> None:
    app = add_application(conn, service_id, days_ago=days_ago, completed=True)
    conn.execute(
        insert(ratings).values(
            application_id=app,
            national_code="0499370899",
            service_id=service_id,
            score=score,
            created_at=rfc3339(NOW - timedelta(days=days_ago)),
        )
    )


def add_bus_call(conn: Connection, service: str, outcome: str = "ok") -> None:
    seq = next(_seq) + 10_000
    conn.execute(
        insert(message_log).values(
            seq=seq,
            ts=rfc3339(NOW),
            request_id=f"r{seq}",
            client="TEST/GOV/14003000014/portal",
            service=service,
            status=200,
            outcome=outcome,
            request_bytes=0,
            response_bytes=0,
            duration_us=1,
            prev_hash="0" * 64,
            hash=f"{seq:064d}",
        )
    )
