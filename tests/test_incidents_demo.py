"""Starting the sandbox (``dargah demo``) opens no incident: the bus's first probes may run
before the sandbox agencies listen, and nothing may come of it.

Probes every 0.5 s for 20 s (forty rounds, more than six minutes of the default 10 s) and a
startup grace of 3 s, so that only "seen up once" keeps a slow start from opening anything.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.demo_process import Demo
from tests.harness import free_port


@pytest.fixture
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    d = Demo(
        tmp_path_factory.mktemp("demo") / "home",
        free_port(),
        env={
            "DARGAH_HEALTH_INTERVAL": "0.5",
            "DARGAH_INCIDENT_OPEN_PROBES": "3",
            "DARGAH_MONITOR_GRACE_SECONDS": "3",
        },
    )
    d.start()
    yield d
    d.stop()


def test_a_demo_start_leaves_no_incident_open(demo: Demo) -> None:
    doc = json.loads((demo.home / "demo.json").read_text(encoding="utf-8"))
    admin = {"Authorization": f"Bearer {doc['admin']['api_token']}"}
    time.sleep(20)
    r = httpx.get(f"http://127.0.0.1:{demo.port}/api/v1/incidents", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json() == []
    status = httpx.get(f"http://127.0.0.1:{demo.port}/api/v1/status", headers=admin).json()
    states = {s["state"] for a in status["agencies"] for s in a["services"]}
    assert states == {"up"}, status
