"""Several bus processes on one database, each running its monitor: one incident, each alert
once (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from dargah.registry import incidents
from tests.harness import DARGAH, World, free_port, make_world
from tests.providers import Provider
from tests.test_incidents import FAST, Alerts, Host, add_host_services, alert_receiver, wait_for


def _second_bus(w: World, env: dict[str, str]) -> subprocess.Popen[bytes]:
    port = free_port()
    full = {**os.environ, "DARGAH_LOG_LEVEL": "warning", **env}
    if w.settings.database_url:
        full["DARGAH_DATABASE_URL"] = w.settings.database_url
    proc = subprocess.Popen(
        [DARGAH, "serve", "bus", "--home", str(w.settings.home), "--port", str(port)],
        env=full,
        stdout=open(w.settings.home / "bus2.log", "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    ready = wait_for(lambda: _ready(port), 30, 0.1)
    assert ready, (w.settings.home / "bus2.log").read_text()[-2000:]
    return proc


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_two_bus_processes_open_one_incident_and_send_each_alert_once(
    tmp_path: Path, provider: Provider, database_url: str
) -> None:
    alerts, hook = alert_receiver()
    host = Host()
    host.up()
    w = make_world(tmp_path / "home", provider.url, database_url)
    on_host = add_host_services(w, host)
    env = {**FAST, "DARGAH_ALERT_WEBHOOK": hook, "DARGAH_ALERT_EMAIL": "noc@ito.example"}
    w.start(**env)
    second = _second_bus(w, env)
    admin = {"Authorization": f"Bearer {w.admin_token}"}

    def listed() -> list[dict[str, Any]]:
        return httpx.get(f"{w.url}/api/v1/incidents", headers=admin).json()  # type: ignore[no-any-return]

    try:
        time.sleep(1.5)
        host.down()
        found = wait_for(lambda: [i for i in listed() if i["state"] == "open"], 30)
        assert found and len(found) == 1 and found[0]["services"] == on_host
        time.sleep(3)  # both processes go on failing their rounds
        assert len(listed()) == 1
        assert [a["status"] for a in Alerts.received] == ["firing"]
        host.up()
        assert wait_for(lambda: listed()[0]["state"] == "resolved", 60)
        assert wait_for(lambda: len(Alerts.received) >= 2, 10)
        time.sleep(3)
        assert len(listed()) == 1
        assert [a["status"] for a in Alerts.received] == ["firing", "resolved"]
        with w.engine.connect() as conn:
            assert len(incidents.outbox_messages(conn, "email")) == 2
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(timeout=15)
        w.stop()
        host.down()
        alerts.shutdown()
