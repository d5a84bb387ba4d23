"""Problems are seen at once: the status of every service from its traffic and the health probes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.harness import free_port, make_world
from tests.providers import Provider


def test_a_failing_provider_shows_down_while_a_healthy_one_shows_up(
    tmp_path: Path, provider: Provider
) -> None:
    w = make_world(tmp_path / "home", provider.url)
    healthy = w.add_service("healthy.v1")
    slow = w.add_service("slowish.v1", "/slow/0.05")
    with w.engine.begin() as conn:
        from dargah.registry import members, services

        members.add_subsystem(conn, w.sid("x", provider="gone").rsplit("/", 1)[0], "test")
        dead = w.sid("dead.v1", provider="gone")
        services.add_service(conn, dead, f"http://127.0.0.1:{free_port()}/api", "test", timeout_s=1)
    for sid in (healthy, slow, dead):
        w.grant("cons", sid)
    w.start(DARGAH_HEALTH_INTERVAL="0.5")
    try:
        token = w.token()
        for sid in (healthy, slow, dead):
            for _ in range(4):
                w.call(sid, "/x", token=token, purpose=None, subject=None)
        admin = {"Authorization": f"Bearer {w.admin_token}"}
        deadline = time.monotonic() + 10
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            r = httpx.get(f"{w.url}/api/v1/status", params={"minutes": 5}, headers=admin)
            assert r.status_code == 200, r.text
            body = r.json()
            states = {s["service"]: s for a in body["agencies"] for s in a["services"]}
            if states.get(dead, {}).get("probe"):
                break
            time.sleep(0.3)
        states = {s["service"]: s for a in body["agencies"] for s in a["services"]}
        assert states[healthy]["state"] == "up" and states[healthy]["error_rate"] == 0
        assert states[healthy]["probe"]["ok"] is True
        assert states[slow]["latency_ms"]["p50"] >= 40
        assert states[dead]["state"] == "down", states[dead]
        assert states[dead]["probe"]["ok"] is False and states[dead]["failed"] >= 4
        agencies = {a["agency"]: a["state"] for a in body["agencies"]}
        assert agencies[w.member("10100387143")] == "down"  # its worst service
        assert httpx.get(f"{w.url}/api/v1/status").status_code == 401
    finally:
        w.stop()


def test_a_busy_service_is_judged_by_its_newest_calls_and_counted_whole(
    tmp_path: Path, provider: Provider
) -> None:
    """Past SAMPLE calls in the window, the rates come from the newest calls (a check's cost
    stays bounded at any traffic) while ``calls`` still counts the whole window."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import insert

    from dargah.bus.status import SAMPLE, service_status
    from dargah.core.clock import rfc3339
    from dargah.store.tables import message_log

    w = make_world(tmp_path / "home", provider.url)
    sid = w.add_service("busy.v1")
    now = datetime.now(UTC)
    older, newer = 2_000, SAMPLE
    rows = []
    for i in range(older + newer):
        failed = i < older  # the older calls timed out; the provider has recovered since
        rows.append(
            {
                "seq": i + 1,
                "ts": rfc3339(now - timedelta(seconds=60) + timedelta(microseconds=i * 4000)),
                "request_id": f"r{i}",
                "client": "c",
                "service": sid,
                "status": 504 if failed else 200,
                "outcome": "provider-timeout" if failed else "ok",
                "request_bytes": 0,
                "response_bytes": 0,
                "duration_us": 5_000_000 if failed else 2_000,
                "prev_hash": "0" * 64,
                "hash": "0" * 64,
            }
        )
    with w.engine.begin() as conn:
        conn.execute(insert(message_log), rows)
    with w.engine.connect() as conn:
        (entry,) = [e for e in service_status(conn, 5, None, now=now) if e["service"] == sid]
    assert entry["calls"] == older + newer and entry["sampled"] == SAMPLE
    assert entry["state"] == "up" and entry["failed"] == 0, entry
    assert entry["latency_ms"]["p99"] == 2.0


def test_a_service_is_judged_by_its_own_objectives_set_through_the_api(
    tmp_path: Path, provider: Provider
) -> None:
    w = make_world(tmp_path / "home", provider.url)
    slow = w.add_service("slowish.v1", "/slow/0.05")
    w.grant("cons", slow)
    w.start(DARGAH_HEALTH_INTERVAL="0.5")
    try:
        token = w.token()
        for _ in range(6):
            assert w.call(slow, "/x", token=token).status_code == 200
        admin = {"Authorization": f"Bearer {w.admin_token}"}
        path = f"{w.url}/api/v1/services/{slow}/objectives"

        def entry() -> dict[str, Any]:
            r = httpx.get(f"{w.url}/api/v1/status", headers=admin)
            assert r.status_code == 200, r.text
            (found,) = [
                s for a in r.json()["agencies"] for s in a["services"] if s["service"] == slow
            ]
            return found  # type: ignore[no-any-return]

        before = entry()
        assert before["state"] == "up" and before["slo"]["objective"]["custom"] is False
        too_strict = {"availability": 100, "latency_ms": 20, "latency_percent": 95}
        assert httpx.put(path, json=too_strict, headers=admin).status_code == 400
        strict = {"availability": 99.9, "latency_ms": 20, "latency_percent": 95}
        r = httpx.put(path, json=strict, headers=admin)
        assert r.status_code == 200, r.text
        assert r.json()["objective"] == {**strict, "custom": True}
        assert entry()["state"] == "degraded"  # p95 about 50 ms, over its own 20 ms
        listed = httpx.get(f"{w.url}/api/v1/objectives", headers=admin).json()
        assert listed["defaults"]["availability"] == 99.5
        assert [s["objective"]["custom"] for s in listed["services"] if s["service"] == slow] == [
            True
        ]
        assert httpx.delete(path, headers=admin).status_code == 200
        assert entry()["state"] == "up"
        assert httpx.delete(path, headers=admin).status_code == 404
        assert httpx.put(path, json=strict).status_code == 401
    finally:
        w.stop()
