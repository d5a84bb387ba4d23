"""Everyone sees the same truth: the public status page (no sign-in, Persian, right to left,
Jalali dates and Persian digits, accessible), 90 days of daily uptime, incidents with their
updates; the portal's service page says in Persian that a source is down."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, update

from dargah.core.clock import rfc3339
from dargah.core.jalali import TEHRAN
from dargah.oversight.uptime import Span, daily_uptime
from dargah.registry import incidents
from dargah.store.tables import incident_outages, public_services, services
from tests.console_site import start_site
from tests.harness import PROVIDER_LEGAL_ID, World, make_world
from tests.providers import Provider

AXE = (
    Path(__file__).resolve().parent.parent / "tools/browser-checks/node_modules/axe-core/axe.min.js"
)
USES_SOURCE, UNTOUCHED = "12345678901", "12345678902"


def _card(w: World, service_id: str, sources: list[str], title: str) -> dict[str, Any]:
    return {
        "service_id": service_id,
        "member_id": w.member(PROVIDER_LEGAL_ID),
        "agency_legal_id": PROVIDER_LEGAL_ID,
        "title_fa": title,
        "data_sources": json.dumps(sources),
        "status": "active",
        "extra": "{}",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, provider: Provider
) -> Iterator[tuple[World, dict[str, Any]]]:
    w = make_world(tmp_path_factory.mktemp("status-page") / "home", provider.url)
    down = w.add_service("person.v1", title="استعلام هویت")
    up = w.add_service("address.v1", title="نشانی")
    now = datetime.now(UTC)
    with w.engine.begin() as conn:
        conn.execute(update(services).values(created_at=rfc3339(now - timedelta(days=10))))
        conn.execute(
            insert(public_services),
            [
                _card(w, USES_SOURCE, [down], "صدور گواهی"),
                _card(w, UNTOUCHED, [up], "تغییر نشانی"),
            ],
        )
        old = incidents.open_cause(
            conn,
            "host:http://127.0.0.1:9",
            "prov",
            [up],
            rfc3339(now - timedelta(days=3)),
            "earlier",
            "قطعی پیشین نشانی",
            0,
        )
        assert old is not None
        incidents.resolve(conn, old["id"], "test", "برطرف شد")
        conn.execute(
            update(incident_outages)
            .where(incident_outages.c.incident_id == old["id"])
            .values(ended_at=rfc3339(now - timedelta(days=3) + timedelta(hours=6)))
        )
        opened = incidents.open_cause(
            conn,
            "host:http://127.0.0.1:10",
            "prov",
            [down],
            rfc3339(now - timedelta(minutes=30)),
            "Provider host down",
            "میزبان ارائه‌دهنده پاسخ نمی‌دهد",
            3600,
        )
        assert opened is not None
        incidents.add_note(conn, opened["id"], "operator", "internal: call Ali")
    start_site(w)
    try:
        yield w, {"down": down, "up": up, "incident": opened["id"], "old": old["id"]}
    finally:
        w.stop()
        w.engine.dispose()


def test_daily_uptime_is_the_share_of_each_tehran_day_not_in_an_outage() -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=TEHRAN)
    first = datetime(2026, 12, 1, 0, 0, tzinfo=TEHRAN)
    spans = [
        Span(
            datetime(2026, 12, 5, 6, 0, tzinfo=TEHRAN), datetime(2026, 12, 5, 12, 0, tzinfo=TEHRAN)
        ),
        Span(
            datetime(2026, 12, 5, 9, 0, tzinfo=TEHRAN), datetime(2026, 12, 5, 18, 0, tzinfo=TEHRAN)
        ),
        Span(
            datetime(2026, 12, 7, 9, 0, tzinfo=TEHRAN), datetime(2026, 12, 7, 12, 0, tzinfo=TEHRAN)
        ),
    ]
    days = {d["day"]: d["uptime"] for d in daily_uptime(spans, first, now, days=10)}
    assert days["2026-11-30"] is None  # before the service existed
    assert days["2026-12-04"] == 100.0
    assert days["2026-12-05"] == 50.0  # 06:00-18:00 down, overlapping spans counted once
    assert days["2026-12-07"] == 75.0  # 3 of the 12 hours elapsed today
    assert len(days) == 10


def test_the_status_page_needs_no_sign_in_and_shows_states_uptime_and_incidents(
    site: tuple[World, dict[str, Any]],
) -> None:
    w, ids = site
    r = httpx.get(f"{w.url}/status")
    assert r.status_code == 200
    html = r.text
    assert '<html lang="fa" dir="rtl">' in html
    assert f'data-service="{ids["down"]}" data-state="down"' in html
    assert f'data-service="{ids["up"]}" data-state="up"' in html
    assert "میزبان ارائه‌دهنده پاسخ نمی‌دهد" in html and "قطعی پیشین نشانی" in html
    assert "internal: call Ali" not in html  # operators' notes stay in the console
    assert "۱۴۰۵/" in html  # Jalali dates, Persian digits
    data = httpx.get(f"{w.url}/status.json").json()
    assert data["down"] == 1
    services = {s["id"]: s for a in data["agencies"] for s in a["services"]}
    assert len(services[ids["up"]]["days"]) == 90
    three_days_ago = (datetime.now(UTC) - timedelta(days=3)).astimezone(TEHRAN).date()
    shown = {d["day"]: d["uptime"] for d in services[ids["up"]]["days"]}
    assert shown[three_days_ago.isoformat()] is not None
    assert shown[three_days_ago.isoformat()] < 100
    mine = [i for i in data["incidents"] if i["id"] == ids["incident"]]
    assert mine and mine[0]["state"] == "open"
    assert [u["kind"] for u in mine[0]["updates"]] == ["opened"]


def test_the_incident_names_the_public_services_it_breaks(
    site: tuple[World, dict[str, Any]],
) -> None:
    w, ids = site
    admin = {"Authorization": f"Bearer {w.admin_token}"}
    body = httpx.get(f"{w.url}/api/v1/incidents/{ids['incident']}", headers=admin).json()
    cards = body["impact"]["public_services"]
    assert [c["service_id"] for c in cards] == [USES_SOURCE]
    assert cards[0]["sources_down"] == [ids["down"]]
    assert body["impact"]["applications_waiting"] == 0


def test_a_service_page_tells_the_citizen_in_persian_that_a_source_is_down(
    site: tuple[World, dict[str, Any]],
) -> None:
    w, _ids = site
    broken = httpx.get(f"{w.url}/services/{USES_SOURCE}")
    assert broken.status_code == 200
    assert 'id="source-notice"' in broken.text and "اختلال موقت" in broken.text
    fine = httpx.get(f"{w.url}/services/{UNTOUCHED}")
    assert fine.status_code == 200 and 'id="source-notice"' not in fine.text


def test_the_status_page_passes_axe_core(
    site: tuple[World, dict[str, Any]], page: Any, shots: Any
) -> None:
    if not AXE.exists():
        reason = f"axe-core is not installed at {AXE} (make test installs it)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    w, _ids = site
    page.goto(f"{w.url}/status")
    shots(page, "status")
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "async () => { const r = await axe.run(document, {resultTypes: ['violations']});"
        " return r.violations.map(v => ({id: v.id, impact: v.impact,"
        " nodes: v.nodes.slice(0, 3).map(n => n.html)})); }"
    )
    assert result == [], json.dumps(result, ensure_ascii=False, indent=1)
