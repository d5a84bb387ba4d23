"""With Redis, a client's quota is one quota for every bus process; without it, one per process."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from dargah.registry.quotas import set_quota
from tests.harness import make_world
from tests.providers import Provider

REDIS_URL = os.environ.get("DARGAH_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _redis_error() -> str | None:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        return None
    except Exception as exc:
        return str(exc)


def test_two_bus_processes_share_one_quota_through_redis(
    tmp_path: Path, provider: Provider
) -> None:
    error = _redis_error()
    if error is not None:
        if os.environ.get("CI"):
            pytest.fail(f"Redis must be reachable in CI at {REDIS_URL}: {error}")
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {error}")
    w = make_world(tmp_path / "home", provider.url, instance="TEST")
    sid = w.add_service("lookup.v1")
    w.grant("cons", sid)
    with w.engine.begin() as conn:
        set_quota(conn, w.clients["cons"].id, 0.2, "test", burst=6)
    w.start(DARGAH_WORKERS="2", DARGAH_REDIS_URL=REDIS_URL)
    try:
        token = w.token()
        statuses = []
        for _ in range(24):  # new connections: the kernel spreads them over both processes
            with httpx.Client(timeout=10) as http:
                r = http.get(f"{w.url}/r1/{sid}/x", headers={"Authorization": f"Bearer {token}"})
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert (
                    r.headers["gsb-error"] == "rate-limited" and int(r.headers["retry-after"]) >= 1
                )
    finally:
        w.stop()
    assert statuses.count(200) == 6, statuses  # the burst, once, not once per process
    assert statuses.count(429) == 18
