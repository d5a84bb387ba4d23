"""A quota shared in Redis holds to its rate across bus nodes whose clocks disagree.

Two nodes of one instance (PostgreSQL, Redis), one with its wall clock 0.4 s ahead and the
other 0.4 s behind (``tests/skewed_clock.py``), take turns serving one client whose quota is
5 calls per second with a burst of 5. Had each node sent its own time to the bucket, every
turn would refill it by the skew (4 calls' worth) and nearly every call would pass.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from dargah.registry.quotas import set_quota
from tests.cluster import REDIS_URL, Node
from tests.harness import PURPOSE, SUBJECT, make_world
from tests.providers import Provider

RATE, BURST, SECONDS = 5.0, 5.0, 3.0


def _redis_error() -> str | None:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        return None
    except Exception as exc:
        return str(exc)


def test_a_shared_quota_holds_to_its_rate_on_nodes_whose_clocks_are_skewed(
    tmp_path: Path, provider: Provider, pg_database_url: str
) -> None:
    error = _redis_error()
    if error is not None:
        if os.environ.get("CI"):
            pytest.fail(f"Redis must be reachable in CI at {REDIS_URL}: {error}")
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {error}")
    w = make_world(tmp_path / "home", provider.url, pg_database_url)
    sid = w.add_service("lookup.v1")
    w.grant("cons", sid)
    with w.engine.begin() as conn:
        set_quota(conn, w.clients["cons"].id, RATE, "test", burst=BURST)
    env = {"DARGAH_DATABASE_URL": pg_database_url, "DARGAH_REDIS_URL": REDIS_URL}
    ahead = Node("ahead", tmp_path / "ahead", env, clock_offset=0.4)
    behind = Node("behind", tmp_path / "behind", env, clock_offset=-0.4)
    try:
        ahead.start()
        behind.start()
        w.port = ahead.port
        token = w.token()
        headers = {
            "Authorization": f"Bearer {token}",
            "GSB-Purpose": PURPOSE,
            "GSB-Subject": SUBJECT,
        }
        statuses: list[int] = []
        with httpx.Client(timeout=10) as a, httpx.Client(timeout=10) as b:
            started = time.monotonic()
            while time.monotonic() - started < SECONDS:
                for http, node in ((a, ahead), (b, behind)):
                    r = http.get(f"{node.url}/r1/{sid}/x", headers=headers)
                    assert r.status_code in (200, 429), r.text
                    statuses.append(r.status_code)
            elapsed = time.monotonic() - started
    finally:
        ahead.stop()
        behind.stop()
        w.engine.dispose()
    passed = statuses.count(200)
    allowed = BURST + RATE * elapsed
    print(
        f"\n{len(statuses)} calls in {elapsed:.2f} s, {passed} passed; the quota allows {allowed:.1f}"
    )
    assert len(statuses) > 4 * allowed, "too few calls to tell a quota from none"
    assert passed <= allowed + 1, statuses
    assert passed >= BURST + RATE * elapsed * 0.6, statuses
