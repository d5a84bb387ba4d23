"""Liveness and readiness for load balancers, draining before a stop, and the repository's
haproxy configuration.

``/healthz`` says the process answers; ``/readyz`` says it should get calls: false (503)
while the node cannot reach its database or message log, and while it drains after SIGTERM.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx

from tests.cluster import HAPROXY_CFG, Balancer, Node, db_port, via_port
from tests.harness import PURPOSE, SUBJECT, make_world
from tests.providers import Provider
from tests.tcp_cut import Forwarder


def _readyz(node: Node) -> tuple[int, dict[str, object], float]:
    started = time.monotonic()
    r = httpx.get(f"{node.url}/readyz", timeout=10)
    return r.status_code, r.json(), time.monotonic() - started


def test_a_node_that_cannot_reach_its_database_is_alive_but_not_ready_until_it_can(
    tmp_path: Path, provider: Provider, pg_database_url: str
) -> None:
    make_world(tmp_path / "home", provider.url, pg_database_url).engine.dispose()
    fwd = Forwarder(db_port(pg_database_url))
    node = Node("n1", tmp_path / "n1", {"DARGAH_DATABASE_URL": via_port(pg_database_url, fwd.port)})
    try:
        node.start()
        status, body, _ = _readyz(node)
        assert status == 200 and body["status"] == "ready", body
        fwd.cut()
        deadline = time.monotonic() + 10
        while True:
            status, body, took = _readyz(node)
            assert took < 3, "readiness answers within its timeout, even with the database away"
            if status == 503:
                break
            assert time.monotonic() < deadline, "still ready 10 s after the database went away"
            time.sleep(0.2)
        assert body["checks"]["database"] is False, body  # type: ignore[index]
        assert httpx.get(f"{node.url}/healthz", timeout=5).status_code == 200, "still alive"
        fwd.restore()
        deadline = time.monotonic() + 20
        while _readyz(node)[0] != 200:
            assert time.monotonic() < deadline, "not ready 20 s after the database came back"
            time.sleep(0.2)
    finally:
        node.stop()
        fwd.close()


def test_a_draining_node_is_not_ready_but_still_serves_then_stops(
    tmp_path: Path, provider: Provider
) -> None:
    w = make_world(tmp_path / "home", provider.url)
    sid = w.add_service("lookup.v1")
    w.grant("cons", sid)
    w.start(DARGAH_DRAIN_SECONDS="3")
    assert w.bus is not None
    token = w.token()
    w.bus.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    r = httpx.get(f"{w.url}/readyz", timeout=5)
    assert r.status_code == 503 and r.json()["checks"]["serving"] is False, r.text
    call = w.call(sid, "/x", token=token, purpose=PURPOSE, subject=SUBJECT)
    assert call.status_code == 200, "a draining node still serves what reaches it"
    started = time.monotonic()
    w.bus.wait(timeout=20)
    assert w.bus.returncode == 0
    assert time.monotonic() - started < 10, "it stops after the drain"
    w.bus = None
    w.engine.dispose()


def test_the_repositorys_haproxy_configuration_is_valid_without_warnings(tmp_path: Path) -> None:
    nodes = [Node(f"n{i}", tmp_path / f"n{i}", {}) for i in (1, 2, 3)]
    checked = Balancer(nodes, tmp_path / "lb").check()
    assert checked.returncode == 0, checked.stderr + checked.stdout
    assert "WARNING" not in checked.stderr + checked.stdout, checked.stderr
    assert "option httpchk GET /readyz" in HAPROXY_CFG.read_text()
