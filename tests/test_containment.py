"""One failing agency cannot hurt the others: quotas, timeouts, breakers, connection limits."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

import httpx

from dargah.registry import members, quotas, services
from tests.harness import make_world
from tests.providers import Provider


def test_a_hanging_provider_leaves_a_healthy_ones_latency_unharmed(
    tmp_path: Path, provider: Provider
) -> None:
    w = make_world(tmp_path / "home", provider.url)
    healthy = w.add_service("healthy.v1")
    with w.engine.begin() as conn:
        members.add_subsystem(conn, w.sid("x", provider="hangs").rsplit("/", 1)[0], "test")
        hanging = w.sid("hangs.v1", provider="hangs")
        services.add_service(conn, hanging, provider.url + "/slow/3", "test", timeout_s=1)
    w.grant("cons", healthy)
    w.grant("cons", hanging)
    w.start(DARGAH_PROVIDER_CONNECTIONS="4")
    token = w.token()
    headers = {"Authorization": f"Bearer {token}"}
    codes: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                r = http.get(f"{w.url}/r1/{hanging}/x", headers=headers)
                codes.append(r.headers.get("gsb-error", str(r.status_code)))

    try:
        with httpx.Client(timeout=10) as http:
            before = [_timed(http, f"{w.url}/r1/{healthy}/x", headers) for _ in range(30)]
            threads = [threading.Thread(target=hammer) for _ in range(16)]
            for t in threads:
                t.start()
            time.sleep(1.5)  # the hanging provider's connections are all taken, its circuit opens
            during = [_timed(http, f"{w.url}/r1/{healthy}/x", headers) for _ in range(30)]
            stop.set()
            for t in threads:
                t.join()
    finally:
        stop.set()
        w.stop()
    print(
        f"\nhealthy p50 before {statistics.median(before):.1f} ms, during {statistics.median(during):.1f} ms;"
        f" failing provider's answers: {sorted(set(codes))}"
    )
    assert set(codes) <= {"provider-timeout", "circuit-open"} and "provider-timeout" in codes
    assert statistics.median(during) < max(50.0, 5 * statistics.median(before))


def _timed(http: httpx.Client, url: str, headers: dict[str, str]) -> float:
    t = time.perf_counter()
    r = http.get(url, headers=headers)
    assert r.status_code == 200, r.text
    return (time.perf_counter() - t) * 1000


def test_a_client_over_its_quota_gets_429s_while_others_are_served(
    tmp_path: Path, provider: Provider
) -> None:
    w = make_world(tmp_path / "home", provider.url)
    sid = w.add_service("lookup.v1")
    w.grant("cons", sid)
    w.grant("other", sid)
    with w.engine.begin() as conn:
        quotas.set_quota(conn, w.clients["cons"].id, 2, "test", burst=3)
    w.start()
    try:
        greedy, polite = w.token("cons"), w.token("other")
        with httpx.Client(timeout=10) as http:
            g = [
                http.get(f"{w.url}/r1/{sid}/x", headers={"Authorization": f"Bearer {greedy}"})
                for _ in range(20)
            ]
            p = [
                http.get(f"{w.url}/r1/{sid}/x", headers={"Authorization": f"Bearer {polite}"})
                for _ in range(20)
            ]
    finally:
        w.stop()
    limited = [r for r in g if r.status_code == 429]
    assert len(limited) >= 15 and all(r.headers["gsb-error"] == "rate-limited" for r in limited)
    assert all(int(r.headers["retry-after"]) >= 1 for r in limited)
    assert [r.status_code for r in p] == [200] * 20
