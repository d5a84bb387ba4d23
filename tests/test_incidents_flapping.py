"""A provider host flapping opens at most one incident and sends at most one "opened" alert.

The issue's case is a provider flapping every 2 s for a minute against probes every 10 s;
here the same ratios run in 20 s (phases of 2/3 s), with probes every 0.5 s, three failed
rounds to open and three good rounds to resolve.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.harness import make_world
from tests.providers import Provider
from tests.test_incidents import FAST, Alerts, Host, add_host_services, alert_receiver

SECONDS = 20.0
PHASE = 2.0 * SECONDS / 60.0


def test_a_provider_flapping_for_a_while_opens_at_most_one_incident(
    tmp_path: Path, provider: Provider
) -> None:
    alerts, hook = alert_receiver()
    host = Host()
    host.up()
    w = make_world(tmp_path / "home", provider.url)
    add_host_services(w, host)
    admin = {"Authorization": f"Bearer {w.admin_token}"}
    w.start(**FAST, DARGAH_ALERT_WEBHOOK=hook)
    try:
        time.sleep(1.5)
        end = time.monotonic() + SECONDS
        while time.monotonic() < end:
            host.down()
            time.sleep(PHASE)
            host.up()
            time.sleep(PHASE)
        time.sleep(1.0)
        r = httpx.get(f"{w.url}/api/v1/incidents", headers=admin)
        assert r.status_code == 200
        found: list[dict[str, Any]] = r.json()
        assert len(found) <= 1, found
        opened = [a for a in Alerts.received if a["commonAnnotations"]["change"] == "opened"]
        assert len(opened) <= 1, Alerts.received
    finally:
        w.stop()
        host.down()
        alerts.shutdown()
