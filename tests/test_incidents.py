"""A provider failing opens an incident at once, with alerts; people follow it up to resolution."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx

from dargah.registry import incidents, members, services
from tests.harness import free_port, make_world
from tests.providers import Provider


class _Alerts(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Alerts.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()


def test_a_provider_that_stops_answering_opens_one_incident_with_alerts(
    tmp_path: Path, provider: Provider
) -> None:
    alerts = ThreadingHTTPServer(("127.0.0.1", 0), _Alerts)
    threading.Thread(target=alerts.serve_forever, daemon=True).start()
    w = make_world(tmp_path / "home", provider.url)
    healthy = w.add_service("healthy.v1")
    with w.engine.begin() as conn:
        members.add_subsystem(conn, w.sid("x", provider="gone").rsplit("/", 1)[0], "test")
        dead = w.sid("dead.v1", provider="gone")
        services.add_service(conn, dead, f"http://127.0.0.1:{free_port()}/api", "test", timeout_s=1)
    admin = {"Authorization": f"Bearer {w.admin_token}"}
    w.start(
        DARGAH_HEALTH_INTERVAL="0.5",
        DARGAH_ALERT_WEBHOOK=f"http://127.0.0.1:{alerts.server_address[1]}/alerts",
        DARGAH_ALERT_EMAIL="noc@ito.example",
    )
    try:
        deadline = time.monotonic() + 15
        found: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not (found and _Alerts.received):
            r = httpx.get(f"{w.url}/api/v1/incidents", params={"state": "open"}, headers=admin)
            assert r.status_code == 200, r.text
            found = r.json()
            time.sleep(0.3)
        assert [i["service_id"] for i in found] == [dead], found  # one incident, for the dead one
        assert healthy not in str(found)
        assert _Alerts.received and _Alerts.received[0]["incident"]["service_id"] == dead
        with w.engine.connect() as conn:
            mails = incidents.outbox_messages(conn, "email")
        assert mails and mails[0]["recipient"] == "noc@ito.example" and dead in mails[0]["subject"]
        iid = found[0]["id"]
        time.sleep(1.5)  # more monitor rounds: still one incident
        again = httpx.get(f"{w.url}/api/v1/incidents", params={"state": "open"}, headers=admin)
        assert len(again.json()) == 1
        base = f"{w.url}/api/v1/incidents/{iid}"
        assert (
            httpx.post(f"{base}/owner", json={"owner": "حسین کریمی"}, headers=admin).status_code
            == 200
        )
        assert (
            httpx.post(
                f"{base}/notes", json={"text": "provider's host rebooting"}, headers=admin
            ).status_code
            == 200
        )
        done = httpx.post(f"{base}/resolve", json={"resolution": "host back"}, headers=admin)
        assert done.status_code == 200, done.text
        body = done.json()
        assert body["state"] == "resolved" and body["owner"] == "حسین کریمی"
        kinds = [e["kind"] for e in body["timeline"]]
        assert (
            kinds[0] == "opened"
            and "alert" in kinds
            and kinds[-3:] == ["owner", "note", "resolved"]
        )
        twice = httpx.post(f"{base}/resolve", json={"resolution": "again"}, headers=admin)
        assert twice.status_code == 409
    finally:
        w.stop()
        alerts.shutdown()
