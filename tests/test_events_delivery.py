"""Webhook delivery under trouble (protocol §7): a subscriber that is down, a bus killed mid-way,
dead letters and their redelivery, back-off; and the delivery rate of a burst (printed).

At least once: every published event reaches the webhook and is acknowledged;
a duplicate is always the same event (same CloudEvents id, same body, same delivery).
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from dargah.bus.events import store
from dargah.client.consumer import GsbClient
from tests.harness import CONSUMER_LEGAL_ID, DARGAH, World
from tests.webhooks import Hit, Webhook, add_topic, delivery_rows, make_event, subscribe, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with Webhook() as hook:
        yield hook


def publisher(w: World) -> GsbClient:
    c = w.clients["sabt"]
    return GsbClient(w.url, c.id, client_secret=c.secret)


def publish_all(w: World, topic_id: str, evts: list[dict[str, Any]], threads: int = 1) -> None:
    with publisher(w) as pub:
        if threads == 1:
            statuses = [pub.publish(topic_id, e).status_code for e in evts]
        else:
            with ThreadPoolExecutor(threads) as pool:
                statuses = list(pool.map(lambda e: pub.publish(topic_id, e).status_code, evts))
    assert statuses == [202] * len(evts)


def assert_at_least_once(hits: list[Hit], published: list[dict[str, Any]]) -> None:
    """Every event acknowledged, nothing else came, a duplicate is the same event and delivery."""
    by_id = {e["id"]: e for e in published}
    delivery_of: dict[str, str] = {}
    for h in hits:
        assert h.event_id in by_id, f"the webhook got an event nobody published: {h.body[:200]!r}"
        assert h.event == by_id[h.event_id]
        assert (
            delivery_of.setdefault(h.event_id, h.headers["gsb-delivery-id"])
            == h.headers["gsb-delivery-id"]
        )
    assert {h.event_id for h in hits if h.ok} == set(by_id)


def statuses(engine: Any, sub_id: str) -> list[str]:
    return [d["status"] for d in delivery_rows(engine, sub_id)]


def test_events_published_while_the_subscriber_is_down_all_arrive_once_it_is_back(
    world: World, webhook: Webhook
) -> None:
    topic_id = add_topic(world)
    sub_id = subscribe(world, "cons", topic_id, webhook=webhook.url)
    world.start()
    engine = world.engine
    webhook.down()
    down_at = time.monotonic()
    published = [make_event(i) for i in range(50)]
    publish_all(world, topic_id, published)
    # Tried and refused while down.
    assert wait_until(
        lambda: all(d["attempts"] >= 1 and d["last_error"] for d in delivery_rows(engine, sub_id)),
        10,
    )
    time.sleep(max(0.0, down_at + 3.0 - time.monotonic()))  # down for ~3 s
    webhook.up()
    assert webhook.wait_for_ids([e["id"] for e in published], 40) == set()
    assert wait_until(lambda: statuses(engine, sub_id) == ["delivered"] * 50, 10)
    assert_at_least_once(webhook.hits, published)
    assert all(d["attempts"] >= 2 for d in delivery_rows(engine, sub_id))
    # Every attempt is in the message log: subscriber as client, topic as service.
    ids = {f"/deliveries/{d['id']}" for d in delivery_rows(engine, sub_id)}
    recs = [r for r in world.log_rows() if r["path"] in ids]
    assert {(r["client"], r["service"]) for r in recs} == {(world.clients["cons"].id, topic_id)}
    assert sum(r["outcome"] == "ok" for r in recs) == 50
    refused = [r for r in recs if r["outcome"] != "ok"]
    assert refused and {r["outcome"] for r in refused} <= {
        "provider-unavailable",
        "provider-timeout",
    }


def test_a_bus_killed_while_deliveries_are_in_flight_delivers_every_event_after_a_restart(
    world_db: World, webhook: Webhook
) -> None:
    world = world_db
    topic_id = add_topic(world)
    sub_id = subscribe(world, "cons", topic_id, webhook=webhook.url)
    env = {"DARGAH_EVENT_DELIVERY_TIMEOUT": "2"}
    world.start(**env)
    engine = world.engine
    try:
        _kill_and_restart(world, webhook, engine, topic_id, sub_id, env)
    finally:
        engine.dispose()


def _kill_and_restart(
    world: World, webhook: Webhook, engine: Any, topic_id: str, sub_id: str, env: dict[str, str]
) -> None:
    webhook.slow(1.5)  # in flight for 1.5 s each
    published = [make_event(i) for i in range(40)]
    publish_all(world, topic_id, published)
    assert webhook.wait(lambda hits: len(hits) >= 5, 10)
    world.stop(signal.SIGKILL)
    rows = delivery_rows(engine, sub_id)
    done_before = {d["event_id"] for d in rows if d["status"] == "delivered"}
    in_flight = {h.event_id for h in webhook.hits} - done_before
    assert len(in_flight) >= 5, "the bus must die with deliveries in flight"
    webhook.accept()
    world.start(**env)
    # Leases of the dead process run out after the delivery timeout + 5 s.
    assert webhook.wait_for_ids([e["id"] for e in published], 40) == set()
    assert wait_until(lambda: statuses(engine, sub_id) == ["delivered"] * 40, 10)
    hits = webhook.hits
    assert_at_least_once(hits, published)
    for event_id in in_flight:  # those in flight at the kill came again
        assert sum(h.event_id == event_id for h in hits) >= 2
    # Each delivery's acknowledgement is in the message log (a repeat may be there twice).
    ok_paths = {r["path"] for r in world.log_rows() if r["outcome"] == "ok"}
    assert {f"/deliveries/{d['id']}" for d in delivery_rows(engine, sub_id)} <= ok_paths


def test_a_slow_subscriber_does_not_hold_up_deliveries_to_another(
    world: World, webhook: Webhook
) -> None:
    topic_id = add_topic(world)
    world.add_client("third", CONSUMER_LEGAL_ID)
    with Webhook("/slow") as slow:
        slow.slow(6)
        subscribe(world, "cons", topic_id, webhook=webhook.url)
        subscribe(world, "third", topic_id, webhook=slow.url)
        world.start()
        first, second = make_event(1), make_event(2)
        publish_all(world, topic_id, [first])
        assert slow.wait(lambda h: len(h) >= 1, 5)  # its delivery is in flight for 6 s
        assert webhook.wait_for_ids([first["id"]], 5) == set()
        t0 = time.monotonic()
        publish_all(world, topic_id, [second])
        webhook.wait_for_ids([second["id"]], 8)
        latency = max(h.at for h in webhook.hits if h.ok) - t0
        assert latency < 2.5, f"the healthy subscriber waited {latency:.1f} s for the slow one"


def test_a_delivery_that_keeps_failing_goes_dead_and_redeliver_brings_it_back(
    world: World, webhook: Webhook
) -> None:
    topic_id = add_topic(world)
    sub_id = subscribe(world, "cons", topic_id, webhook=webhook.url)
    world.start(DARGAH_EVENT_DEAD_AFTER_SECONDS="3")
    engine = world.engine
    webhook.fail(500)
    published = [make_event(1), make_event(2)]
    publish_all(world, topic_id, published)
    assert wait_until(lambda: statuses(engine, sub_id) == ["dead", "dead"], 15)
    for d in delivery_rows(engine, sub_id):
        assert d["attempts"] >= 2 and "500" in d["last_error"]
    assert webhook.ok_ids() == set()
    attempts_when_dead = len(webhook.hits)
    time.sleep(1.5)
    assert len(webhook.hits) == attempts_when_dead  # dead means no more attempts
    webhook.accept()
    home = str(world.settings.home)
    out = subprocess.run(
        [DARGAH, "subscription", "redeliver", sub_id, "--home", home],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2 deliveries queued again"
    assert webhook.wait_for_ids([e["id"] for e in published], 15) == set()
    assert wait_until(lambda: statuses(engine, sub_id) == ["delivered", "delivered"], 10)
    assert_at_least_once(webhook.hits, published)
    listed = subprocess.run(
        [DARGAH, "subscription", "list", "--home", home], capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    [sub] = json.loads(listed.stdout)
    assert sub["deliveries"] == {"delivered": 2}


def test_attempts_to_a_failing_webhook_back_off_1_2_4_seconds_apart(
    world: World, webhook: Webhook
) -> None:
    topic_id = add_topic(world)
    subscribe(world, "cons", topic_id, webhook=webhook.url)
    world.start()
    webhook.fail(503)
    publish_all(world, topic_id, [make_event()])
    hits = webhook.wait(lambda h: len(h) >= 4, 15)
    assert len(hits) >= 4, [h.at for h in hits]
    at = [h.at for h in hits[:4]]
    gaps = [b - a for a, b in itertools.pairwise(at)]
    for gap, expected in zip(gaps, (1.0, 2.0, 4.0), strict=True):
        assert expected * 0.9 <= gap <= expected + 1.6, gaps
    assert gaps[0] < gaps[1] < gaps[2], gaps


def test_a_burst_of_500_events_to_a_healthy_webhook_is_delivered_and_the_rate_is_printed(
    world: World, webhook: Webhook, capsys: pytest.CaptureFixture[str]
) -> None:
    n = 500
    topic_id = add_topic(world)
    sub_id = subscribe(world, "cons", topic_id, webhook=webhook.url)
    # A backlog of n events stored while the bus is stopped: the drain rate of delivery alone.
    backlog = [make_event(i) for i in range(n)]
    engine = world.engine
    owner = world.clients["sabt"].id
    for e in backlog:
        store.publish(engine, topic_id, e["id"], json.dumps(e, ensure_ascii=False), owner)
    started = time.monotonic()
    world.start()
    ready = time.monotonic()
    assert webhook.wait_for_ids([e["id"] for e in backlog], 60) == set()
    drained = max(h.at for h in webhook.hits if h.ok)
    backlog_rate = n / (drained - ready)
    assert ready > started
    # A burst published by 8 threads while deliveries run: publish to acknowledged, end to end.
    burst = [make_event(i) for i in range(n)]
    t0 = time.monotonic()
    publish_all(world, topic_id, burst, threads=8)
    t_published = time.monotonic()
    assert webhook.wait_for_ids([e["id"] for e in burst], 60) == set()
    t_last = max(h.at for h in webhook.hits if h.ok)
    assert_at_least_once(webhook.hits, backlog + burst)
    assert wait_until(lambda: statuses(engine, sub_id) == ["delivered"] * (2 * n), 10)
    with capsys.disabled():
        print(
            f"\n[events] burst of {n}: published in {t_published - t0:.2f} s "
            f"({n / (t_published - t0):.0f} events/s), all delivered after {t_last - t0:.2f} s "
            f"({n / (t_last - t0):.0f} events/s end to end); "
            f"backlog of {n} drained at {backlog_rate:.0f} events/s"
        )
