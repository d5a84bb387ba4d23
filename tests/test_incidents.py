"""A provider host that goes down opens one incident naming all its services, alerts once, and
resolves by itself after it recovers; the same cause failing again reopens the same incident."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx

from dargah.registry import incidents, members, services
from tests.harness import free_port, make_world
from tests.providers import Provider

FAST = {
    "DARGAH_HEALTH_INTERVAL": "0.5",
    "DARGAH_INCIDENT_OPEN_PROBES": "3",
    "DARGAH_INCIDENT_RESOLVE_PROBES": "3",
}


class Alerts(BaseHTTPRequestHandler):
    """A webhook receiver that keeps every body it gets."""

    received: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Alerts.received.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def alert_receiver() -> tuple[ThreadingHTTPServer, str]:
    Alerts.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Alerts)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/alerts"


class Host:
    """A provider host on a fixed loopback port that can be taken down and brought back."""

    def __init__(self) -> None:
        self.port = free_port()
        self.sock: socket.socket | None = None

    def up(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        self.sock = s

    def down(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def wait_for(what: Callable[[], Any], seconds: float, step: float = 0.3) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(step)
    return None


def add_host_services(w: Any, host: Host) -> list[str]:
    """Four bus services of two provider subsystems, all on ``host``."""
    ids = []
    with w.engine.begin() as conn:
        for sub, codes in (("reg-a", ("a1.v1", "a2.v1", "a3.v1")), ("reg-b", ("b1.v1",))):
            members.add_subsystem(conn, w.sid("x", provider=sub).rsplit("/", 1)[0], "test")
            for code in codes:
                sid = w.sid(code, provider=sub)
                services.add_service(
                    conn, sid, f"http://127.0.0.1:{host.port}/{code}", "test", timeout_s=1
                )
                ids.append(sid)
    return sorted(ids)


def test_a_host_going_down_opens_one_incident_for_all_its_services_and_resolves_by_itself(
    tmp_path: Path, provider: Provider
) -> None:
    alerts, hook = alert_receiver()
    host = Host()
    host.up()
    w = make_world(tmp_path / "home", provider.url)
    healthy = w.add_service("healthy.v1")
    on_host = add_host_services(w, host)
    admin = {"Authorization": f"Bearer {w.admin_token}"}

    def listed(state: str | None = None) -> list[dict[str, Any]]:
        r = httpx.get(
            f"{w.url}/api/v1/incidents", params={"state": state} if state else {}, headers=admin
        )
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    w.start(**FAST, DARGAH_ALERT_WEBHOOK=hook, DARGAH_ALERT_EMAIL="noc@ito.example")
    try:
        time.sleep(2)  # the host is seen up
        assert listed() == []
        host.down()
        went_down = time.monotonic()
        found = wait_for(lambda: listed("open"), 30)
        took = time.monotonic() - went_down
        assert found and len(found) == 1, found
        (incident,) = found
        assert incident["services"] == on_host and healthy not in incident["services"]
        assert incident["cause"] == f"host:http://127.0.0.1:{host.port}"
        assert "میزبان" in incident["summary_fa"] and "۴" in incident["summary_fa"]
        assert took < 30
        assert wait_for(lambda: Alerts.received, 10)
        time.sleep(2.5)  # more rounds while it is down: still one incident, one alert
        assert len(listed()) == 1
        assert [a["status"] for a in Alerts.received] == ["firing"]
        fired = Alerts.received[0]
        assert fired["version"] == "4" and fired["receiver"] == "dargah"
        assert fired["groupLabels"] == {"cause": incident["cause"]}
        assert sorted(a["labels"]["service"] for a in fired["alerts"]) == on_host
        first = fired["alerts"][0]
        assert first["endsAt"] == "0001-01-01T00:00:00Z" and first["startsAt"]
        assert first["generatorURL"].endswith(f"/console/incident?id={incident['id']}")
        assert "summary" in first["annotations"] and "summary_fa" in first["annotations"]
        assert len({a["fingerprint"] for a in fired["alerts"]}) == 4
        with w.engine.connect() as conn:
            mails = incidents.outbox_messages(conn, "email")
        assert len(mails) == 1 and mails[0]["recipient"] == "noc@ito.example"
        assert "رخداد" in mails[0]["text"] and "Incident" in mails[0]["text"]

        host.up()
        came_back = time.monotonic()
        assert wait_for(lambda: not listed("open"), 60) is not None
        assert time.monotonic() - came_back < 60
        done = wait_for(lambda: len(Alerts.received) >= 2, 10)
        assert done
        time.sleep(1.5)
        assert [a["status"] for a in Alerts.received] == ["firing", "resolved"]
        assert Alerts.received[1]["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"

        def both_alerts_noted() -> dict[str, Any] | None:
            """The incident once both alerts are on its timeline (noted when the webhook
            answered)."""
            r = httpx.get(f"{w.url}/api/v1/incidents/{incident['id']}", headers=admin)
            found: dict[str, Any] = r.json()
            kinds = [e["kind"] for e in found["timeline"]]
            return found if kinds.count("alert") == 2 else None

        body = wait_for(both_alerts_noted, 10)
        assert body and body["state"] == "resolved"
        kinds = [e["kind"] for e in body["timeline"]]
        assert kinds[0] == "opened" and "resolved" in kinds and kinds.count("alert") == 2
        assert body["outages"][0]["ended_at"]

        # The same cause again, within the reopen window: the same incident reopens.
        host.down()
        again = wait_for(lambda: listed("open"), 30)
        assert again and [i["id"] for i in again] == [incident["id"]]
        assert len(listed()) == 1
        assert wait_for(lambda: len(Alerts.received) >= 3, 10)
        assert Alerts.received[2]["status"] == "firing"
        assert Alerts.received[2]["commonAnnotations"]["change"] == "updated"
        base = f"{w.url}/api/v1/incidents/{incident['id']}"
        r = httpx.post(f"{base}/owner", json={"owner": "حسین کریمی"}, headers=admin)
        assert r.status_code == 200
        r = httpx.post(f"{base}/notes", json={"text": "host rebooting"}, headers=admin)
        assert r.status_code == 200
        r = httpx.post(f"{base}/resolve", json={"resolution": "host back"}, headers=admin)
        assert r.status_code == 200, r.text
        closed = r.json()
        assert closed["state"] == "resolved" and closed["owner"] == "حسین کریمی"
        assert len(closed["outages"]) == 2
        twice = httpx.post(f"{base}/resolve", json={"resolution": "again"}, headers=admin)
        assert twice.status_code == 409
        assert wait_for(lambda: len(Alerts.received) >= 4, 10)
        assert Alerts.received[3]["status"] == "resolved"
    finally:
        w.stop()
        host.down()
        alerts.shutdown()
