"""The four KPIs, measured from what citizens did and reported by agencies, with the gap."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from dargah.oversight.kpis import measure_kpis, period_window
from dargah.oversight.overview import build_overview
from dargah.registry.catalogue.reports import put_report
from tests.harness import World, make_world
from tests.oversight_factory import (
    NOW,
    POST,
    add_application,
    add_rating,
    card,
    load_cards,
    make_instance,
)

A, B, C = "20700000001", "20700000002", "20700000003"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = make_instance(tmp_path, [card(A), card(B), card(C, agency=POST)])
    yield e
    e.dispose()


def kpi(rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(r for r in rows if r["kpi"] == name)


def test_satisfaction_is_the_share_of_ratings_of_4_or_5_in_the_window(engine: Engine) -> None:
    with engine.begin() as conn:
        for score in (5, 4, 3, 1):
            add_rating(conn, A, score)
        add_rating(conn, A, 1, days_ago=200)  # outside the last 90 days
        put_report(conn, A, "1405", {"satisfaction_pct": 90}, "test")
        rows = measure_kpis(conn, [A], NOW).of([A]).rows()
    sat = kpi(rows, "satisfaction")
    assert (sat["measured"], sat["reported"]) == (0.5, 0.9)
    assert sat["gap"] == pytest.approx(-0.4)


def test_completion_rate_is_completed_over_started_applications(engine: Engine) -> None:
    with engine.begin() as conn:
        for done in (True, True, True, False):
            add_application(conn, A, completed=done)
        put_report(conn, A, "1405", {"started": 100, "completed": 60}, "test")
        rows = measure_kpis(conn, [A], NOW).of([A]).rows()
    assert (kpi(rows, "completion")["measured"], kpi(rows, "completion")["reported"]) == (
        0.75,
        0.6,
    )


def test_digital_take_up_counts_the_agencys_in_person_applications(engine: Engine) -> None:
    with engine.begin() as conn:
        for _ in range(30):
            add_application(conn, A)
        put_report(
            conn,
            A,
            "1405",
            {"applications_online": 80, "applications_in_person": 20, "applications_other": 0},
            "test",
        )
        rows = measure_kpis(conn, [A, B], NOW).of([A, B]).rows()
    take_up = kpi(rows, "digital_take_up")
    assert take_up["measured"] == pytest.approx(30 / 50)
    assert take_up["reported"] == pytest.approx(0.8)


def test_digital_take_up_is_unknown_without_in_person_counts(engine: Engine) -> None:
    with engine.begin() as conn:
        add_application(conn, A)
        rows = measure_kpis(conn, [A], NOW).of([A]).rows()
    assert kpi(rows, "digital_take_up")["measured"] is None
    assert kpi(rows, "digital_take_up")["gap"] is None


def test_cost_per_transaction_is_reported_cost_over_all_transactions(engine: Engine) -> None:
    with engine.begin() as conn:
        for _ in range(10):
            add_application(conn, A)
        put_report(
            conn,
            A,
            "1405",
            {
                "applications_online": 50,
                "applications_in_person": 30,
                "cost_total_rials": 4_000_000,
                "cost_per_transaction_rials": 45_000,
            },
            "test",
        )
        rows = measure_kpis(conn, [A], NOW).of([A]).rows()
    cost = kpi(rows, "cost_per_transaction")
    assert cost["measured"] == pytest.approx(4_000_000 / 40)  # 10 measured + 30 in person
    assert cost["reported"] == 45_000
    assert cost["gap"] == pytest.approx(100_000 - 45_000)


def test_an_agency_sums_its_services_figures_not_their_averages(engine: Engine) -> None:
    with engine.begin() as conn:
        for score in (5, 5, 5, 5, 5, 5, 5, 5, 1, 1):  # A: 8 of 10
            add_rating(conn, A, score)
        add_rating(conn, B, 1)  # B: 0 of 1
        add_rating(conn, C, 5)  # another agency's
        ov = build_overview(conn, NOW)
    sabt = ov.find_agency("10100387143")
    assert sabt is not None and ov.find_agency(sabt) == sabt
    assert kpi(ov.kpis(sabt), "satisfaction")["measured"] == pytest.approx(8 / 11, abs=1e-6)
    assert kpi(ov.kpis(None), "satisfaction")["measured"] == pytest.approx(9 / 12, abs=1e-6)


def test_a_chosen_jalali_period_is_the_measured_window_too(engine: Engine) -> None:
    window = period_window("1405-Q3")
    assert window is not None
    assert window.start.date().isoformat() == "2026-09-22"  # 1405/07/01, Tehran midnight
    with engine.begin() as conn:
        put_report(conn, A, "1405-Q3", {"satisfaction_pct": 50}, "test")
        put_report(conn, A, "1405-Q4", {"satisfaction_pct": 70}, "test")
        add_rating(conn, A, 5, days_ago=70)  # 1405/06/21: before the quarter
        add_rating(conn, A, 5, days_ago=30)  # in 1405-Q3
        add_rating(conn, A, 2, days_ago=20)
        chosen = measure_kpis(conn, [A], NOW, "1405-Q3").of([A]).rows()
        latest = measure_kpis(conn, [A], NOW).of([A]).rows()
    assert kpi(chosen, "satisfaction")["measured"] == 0.5
    assert kpi(chosen, "satisfaction")["reported"] == 0.5
    assert kpi(latest, "satisfaction")["reported"] == 0.7  # the latest report: 1405-Q4
    assert kpi(latest, "satisfaction")["measured"] == pytest.approx(2 / 3, abs=1e-6)


def test_with_nothing_measured_or_reported_every_kpi_is_empty(engine: Engine) -> None:
    with engine.connect() as conn:
        rows = measure_kpis(conn, [A], NOW).of([A]).rows()
    assert [(r["measured"], r["reported"], r["gap"]) for r in rows] == [(None, None, None)] * 4


# -- the management API -----------------------------------------------------------------------


@pytest.fixture
def api(tmp_path: Path) -> Iterator[World]:
    w = make_world(tmp_path / "home", "http://127.0.0.1:9")
    load_cards(w.engine, tmp_path, [card(A, agency="10100387143")])
    w.start()
    try:
        yield w
    finally:
        w.stop()


def test_an_agency_reports_a_periods_figures_through_the_api(api: World) -> None:
    admin = {"Authorization": f"Bearer {api.admin_token}"}
    url = f"{api.url}/api/v1/public-services/{A}/reports/۱۴۰۵"
    body = {"applications_online": 80, "applications_in_person": 20, "satisfaction_pct": 81.5}
    r = httpx.put(url, json=body, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["period"] == "1405" and r.json()["satisfaction_pct"] == 81.5
    r = httpx.put(url, json={**body, "satisfaction_pct": 70}, headers=admin)
    assert r.status_code == 200, r.text
    listed = httpx.get(f"{api.url}/api/v1/public-services/{A}/reports", headers=admin).json()
    assert [(x["period"], x["satisfaction_pct"]) for x in listed] == [("1405", 70.0)]
    kpis = httpx.get(f"{api.url}/api/v1/oversight/kpis", headers=admin).json()
    assert kpi(kpis["nation"], "satisfaction")["reported"] == 0.7
    assert kpi(kpis["nation"], "digital_take_up")["reported"] == 0.8
    assert kpis["agencies"][0]["member_id"].endswith("10100387143")


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        (f"{A}/reports/1405", {"satisfaction_pct": 101}, 400),
        (f"{A}/reports/1405", {"started": -1}, 400),
        (f"{A}/reports/1405", {"unknown": 1}, 400),
        (f"{A}/reports/1405", {}, 400),
        ("20799999999/reports/1405", {"started": 1}, 404),
    ],
)
def test_a_bad_report_is_refused_with_a_problem(
    api: World, path: str, body: dict[str, Any], status: int
) -> None:
    admin = {"Authorization": f"Bearer {api.admin_token}"}
    r = httpx.put(f"{api.url}/api/v1/public-services/{path}", json=body, headers=admin)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert httpx.put(f"{api.url}/api/v1/public-services/{path}", json=body).status_code == 401
