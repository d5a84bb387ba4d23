"""Upgrading closes the incidents the old monitor left open (one per service, opened by a
single failed probe), with a note on their timeline, on SQLite and PostgreSQL; downgrading
back works too."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import text

from dargah.core.settings import Settings
from dargah.registry import incidents
from dargah.registry.instance import open_instance
from dargah.store.db import alembic_config


def test_the_upgrade_resolves_incidents_left_open_by_the_old_monitor(
    tmp_path: Path, database_url: str
) -> None:
    engine = open_instance(Settings(home=tmp_path / "h", database_url=database_url))[0]
    cfg = alembic_config(engine)
    command.downgrade(cfg, "0012")
    with engine.begin() as conn:
        for n, state in ((1, "open"), (2, "open"), (3, "resolved")):
            conn.execute(
                text(
                    "INSERT INTO incidents (id, service_id, provider, kind, state, open_key, "
                    "opened_at, summary) VALUES (:id, :s, 'p', 'down', :state, :key, "
                    "'2026-12-01T00:00:00Z', 'x is down')"
                ),
                {
                    "id": n,
                    "s": f"S/{n}",
                    "state": state,
                    "key": f"S/{n}" if state == "open" else None,
                },
            )
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        assert incidents.list_incidents(conn, "open") == []
        first = incidents.get_incident(conn, 1)
    assert first["state"] == "resolved" and first["open_key"] is None
    assert first["services"] == ["S/1"] and first["revision"] == 0
    assert [e["kind"] for e in first["timeline"]] == ["resolved"]
    assert "ارتقا" in first["resolution"]
    command.downgrade(cfg, "0012")
    command.upgrade(cfg, "head")
    engine.dispose()
