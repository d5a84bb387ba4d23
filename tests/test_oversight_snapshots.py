"""Daily snapshots: one row per day and scope, taken again without duplicates; the plan's
projection follows their history."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from dargah.cli.main import main
from dargah.oversight.overview import build_overview
from dargah.oversight.snapshots import store, take_snapshot
from dargah.store.people_tables import oversight_snapshots
from tests.oversight_factory import NOW, POST, add_rating, card, make_instance

A, B, C = "20700000021", "20700000022", "20700000023"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = make_instance(tmp_path / "home", [card(A), card(B), card(C, agency=POST)])
    yield e
    e.dispose()


def rows(engine: Engine) -> list[tuple[str, str, dict[str, object]]]:
    s = oversight_snapshots.c
    with engine.connect() as conn:
        found = conn.execute(select(s.day, s.scope, s.data).order_by(s.day, s.scope))
        return [(d, scope, json.loads(data)) for d, scope, data in found]


def test_a_snapshot_stores_the_nation_and_each_agency_once_a_day(engine: Engine) -> None:
    with engine.begin() as conn:
        add_rating(conn, A, 5)
    first = take_snapshot(engine, NOW)
    assert first["scopes"] == 3
    with engine.begin() as conn:
        add_rating(conn, A, 1)
    take_snapshot(engine, NOW + timedelta(hours=2))  # the same Tehran day
    stored = rows(engine)
    assert [(d, s) for d, s, _ in stored] == [
        ("2026-11-20", "TEST/GOV/10100387143"),
        ("2026-11-20", "TEST/GOV/14003000014"),
        ("2026-11-20", "nation"),
    ]
    nation = stored[-1][2]
    assert nation["n_services"] == 3 and nation["verified_levels"] == [0, 2, 0, 1, 0, 0]
    sat = next(k for k in nation["kpis"] if k["kpi"] == "satisfaction")  # type: ignore[attr-defined]
    assert sat["measured"] == 0.5  # the second snapshot replaced the first
    assert nation["duplicates"]["candidates"] is not None  # type: ignore[index]


def test_the_next_day_adds_rows_and_the_projection_follows_the_history(engine: Engine) -> None:
    take_snapshot(engine, NOW - timedelta(days=1), duplicates=False)
    take_snapshot(engine, NOW, duplicates=False)
    assert len(rows(engine)) == 6
    with engine.begin() as conn:
        # an earlier history of 1 smart service, rising to 2: the projection follows it
        past = NOW.date() - timedelta(days=200)
        store(conn, past, {"nation": {"smart": 2}}, NOW)
        store(conn, past - timedelta(days=100), {"nation": {"smart": 1}}, NOW)
        ov = build_overview(conn, NOW)
    history = ov.history("nation")
    assert [v for _, v in history] == [1.0, 2.0, 0.0, 0.0]
    progress = ov.summary()["progress"]
    assert progress["smart"] == 0
    # a falling line from 2 to 0 over 300 days projects below zero by the plan's end
    assert progress["projection"] < 0


def test_the_cli_verb_takes_a_snapshot(tmp_path: Path, engine: Engine) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["oversight", "snapshot", "--home", str(tmp_path / "home")])
    assert result.exit_code == 0, result.output
    assert "nation and 2 agencies" in result.output and "services 3" in result.output
    again = runner.invoke(main, ["oversight", "snapshot", "--home", str(tmp_path / "home")])
    assert again.exit_code == 0
    assert len({(d, s) for d, s, _ in rows(engine)}) == len(rows(engine)) == 3


def test_a_running_instance_keeps_its_daily_snapshot_by_itself(sandbox_demo: Any) -> None:
    """Nobody ran ``dargah oversight snapshot``: the bus took today's a few seconds after start."""
    from sqlalchemy import create_engine, text

    from dargah.core.settings import Settings

    url = sandbox_demo.env.get("DARGAH_DATABASE_URL", "")
    engine = create_engine(Settings(home=sandbox_demo.home, database_url=url).db_url)
    deadline = time.monotonic() + 30
    rows = 0
    try:
        while time.monotonic() < deadline and not rows:
            with engine.connect() as conn:
                rows = conn.execute(
                    text("SELECT count(*) FROM oversight_snapshots WHERE scope = 'nation'")
                ).scalar_one()
            time.sleep(0.5)
    finally:
        engine.dispose()
    assert rows == 1


def test_ensure_today_takes_the_snapshot_once_a_day(tmp_path: Path) -> None:
    from dargah.core.settings import Settings
    from dargah.oversight.daily import ensure_today
    from dargah.registry.instance import open_instance

    engine, _info, _ = open_instance(Settings(home=tmp_path / "home"))
    try:
        now = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
        assert ensure_today(engine, now) is True
        assert ensure_today(engine, now + timedelta(hours=5)) is False  # same Tehran day
        assert ensure_today(engine, now + timedelta(days=1)) is True
    finally:
        engine.dispose()
