"""With Redis, a registry change reaches every bus process at once, not at its next poll;
without Redis (or with Redis away) polling still carries it."""

from __future__ import annotations

import os
import time

import pytest

from dargah.core.settings import Settings
from dargah.registry import grants
from dargah.registry.instance import open_instance
from tests.harness import World

REDIS_URL = os.environ.get("DARGAH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_or_skip() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Redis must be reachable in CI at {REDIS_URL}: {exc}")
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")


def _revoke_and_time(w: World, settings: Settings, sid: str) -> float:
    token = w.token()
    assert w.call(sid, "/x", token=token).status_code == 200
    engine, _info, _ = open_instance(settings)  # as the CLI or the management API would
    try:
        with engine.begin() as conn:
            grants.revoke_grant(conn, w.clients["cons"].id, sid, "test")
    finally:
        engine.dispose()
    started = time.monotonic()
    while time.monotonic() - started < 20:
        if w.call(sid, "/x", token=token).status_code == 403:
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError("the revocation never took effect")


def test_a_revocation_announced_on_redis_takes_effect_before_the_next_poll(world: World) -> None:
    _redis_or_skip()
    w = world
    sid = w.add_service("plain.v1")
    w.grant("cons", sid)
    w.start(DARGAH_REDIS_URL=REDIS_URL, DARGAH_REFRESH_SECONDS="15")
    took = _revoke_and_time(w, Settings(home=w.settings.home, redis_url=REDIS_URL), sid)
    assert took < 2.0, f"the revocation took {took:.2f} s with a 15 s poll"


def test_without_the_announcement_the_poll_still_carries_the_change(world: World) -> None:
    _redis_or_skip()
    w = world
    sid = w.add_service("plain.v1")
    w.grant("cons", sid)
    w.start(DARGAH_REDIS_URL=REDIS_URL, DARGAH_REFRESH_SECONDS="3")
    took = _revoke_and_time(w, Settings(home=w.settings.home), sid)  # no Redis: no nudge
    assert took < 6.0, took
