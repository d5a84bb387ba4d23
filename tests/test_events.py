"""Events (protocol §7): publishing, refusals, webhook delivery with its assertion, pulling, grants.

Each test runs the real bus as a subprocess and a real webhook on loopback.
"""

from __future__ import annotations

import base64
import json
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from dargah.client.assertions import AssertionVerifier, InvalidAssertion
from dargah.client.consumer import GsbClient
from dargah.core.errors import Conflict
from dargah.registry import grants, topics
from dargah.store.tables import events
from tests.harness import World
from tests.webhooks import (
    Webhook,
    add_topic,
    delivery_rows,
    make_event,
    subscribe,
    wait_until,
)

WAIT = 15.0


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with Webhook() as hook:
        yield hook


@pytest.fixture
def engines() -> Iterator[list[Any]]:
    """Engines a test opens, disposed of at its end (PostgreSQL connections are not left open)."""
    opened: list[Any] = []
    yield opened
    for e in opened:
        e.dispose()


def engine_of(w: World, engines: list[Any]) -> Any:
    e = w.engine
    engines.append(e)
    return e


def publisher(w: World, name: str = "sabt") -> GsbClient:
    c = w.clients[name]
    return GsbClient(w.url, c.id, client_secret=c.secret)


def post_event(
    w: World, topic_id: str, body: bytes | Any, token: str | None, **kw: Any
) -> httpx.Response:
    headers = {"content-type": "application/cloudevents+json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    content = body if isinstance(body, bytes | Iterator) else json.dumps(body).encode()
    return httpx.post(f"{w.url}/e1/{topic_id}", content=content, headers=headers, timeout=30, **kw)


def assert_problem(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["gsb-error"] == code
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code


def pull(w: World, sub_id: str, token: str, after: str | None = None) -> httpx.Response:
    params = {"after": after} if after is not None else None
    return httpx.get(
        f"{w.url}/e1/subscriptions/{sub_id}/events",
        params=params,
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    )


def log_row(w: World, log_id: str) -> dict[str, Any]:
    """The record of a ``GSB-Log-Id`` (``{seq}``, or ``{chain}:{seq}`` with several chains)."""
    chain, _, seq = log_id.rpartition(":")
    return next(r for r in w.log_rows() if (r["chain"], r["seq"]) == (chain, int(seq)))


# -- publishing -------------------------------------------------------------


def test_the_topic_owner_publishes_and_gets_202_only_once_the_event_is_durably_stored(
    world_db: World, engines: list[Any]
) -> None:
    w = world_db
    topic_id = add_topic(w)
    w.start()
    event = make_event()
    with publisher(w) as pub:
        r = pub.publish(topic_id, event)
    assert r.status_code == 202, r.text
    assert r.json() == {"id": event["id"], "topic": topic_id, "accepted": True}
    log_id = r.headers["gsb-log-id"]
    # Killed the instant the answer arrived: the event and its log record must already be stored.
    w.stop(signal.SIGKILL)
    engine = engine_of(w, engines)
    with engine.connect() as conn:
        stored = conn.execute(select(events).where(events.c.topic_id == topic_id)).mappings().all()
    assert [row["event_id"] for row in stored] == [event["id"]]
    assert json.loads(stored[0]["body"]) == event
    rec = log_row(w, log_id)
    owner = w.clients["sabt"].id
    assert (rec["client"], rec["service"], rec["method"]) == (owner, topic_id, "POST")
    assert (rec["status"], rec["outcome"]) == (202, "ok")


def test_only_the_topic_owner_may_publish_and_a_refusal_is_logged(world: World) -> None:
    topic_id = add_topic(world)
    world.add_client("sabt2", "10100387143")
    world.start()
    r = post_event(world, topic_id, make_event(), world.token("cons"))
    assert_problem(r, 403, "access-denied")
    rec = log_row(world, r.headers["gsb-log-id"])
    assert (rec["client"], rec["service"], rec["outcome"]) == (
        world.clients["cons"].id,
        topic_id,
        "access-denied",
    )
    # Another subsystem of the owner's own member is not the owner either.
    assert_problem(
        post_event(world, topic_id, make_event(), world.token("sabt2")), 403, "access-denied"
    )


def test_publishing_on_an_unknown_topic_is_unknown_service_but_only_after_authentication(
    world: World,
) -> None:
    topic_id = add_topic(world)
    world.start()
    unknown = topic_id.replace("birth-registered.v1", "death-registered.v1")
    assert_problem(
        post_event(world, unknown, make_event(), world.token("sabt")), 404, "unknown-service"
    )
    assert_problem(post_event(world, unknown, make_event(), None), 401, "unauthenticated")


def test_malformed_topic_ids_and_bodies_that_are_not_cloudevents_are_bad_requests(
    world: World,
) -> None:
    topic_id = add_topic(world)
    world.start()
    token = world.token("sabt")
    for bad_topic in (
        "nonsense",
        "TEST/GOV/10100387143/sabt/Bad_Type",
        "TEST/GOV/10100387144/sabt/birth.v1",
        "TEST/GOV/10100387143/sabt",
        "TEST/GOV/10100387143/sabt/birth.v1/extra",
    ):
        for tok in (token, None):  # identifiers are checked before the token
            assert_problem(post_event(world, bad_topic, make_event(), tok), 400, "bad-request")
    complete = make_event()
    bodies: list[bytes] = [b"", b"not json", b"\xff\xfe{", b"[1, 2]", b'"1.0"', b"null"]
    for attr in ("id", "source", "type", "specversion"):
        bodies.append(json.dumps({k: v for k, v in complete.items() if k != attr}).encode())
        bodies.append(json.dumps({**complete, attr: ""}).encode())
        bodies.append(json.dumps({**complete, attr: 5}).encode())
    bodies.append(json.dumps({**complete, "specversion": "0.3"}).encode())
    bodies.append(json.dumps({**complete, "id": "x" * 256}).encode())
    for body in bodies:
        r = post_event(world, topic_id, body, token)
        assert r.status_code == 400, (body[:80], r.text)
        assert_problem(r, 400, "bad-request")
    with world.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == 0


def test_an_oversized_event_is_payload_too_large_whether_declared_or_streamed(
    world: World,
) -> None:
    topic_id = add_topic(world)
    world.start(DARGAH_EVENT_MAX_BYTES="2000")
    token = world.token("sabt")
    big = make_event(filler="x" * 2100)
    assert_problem(post_event(world, topic_id, big, token), 413, "payload-too-large")
    raw = json.dumps(big).encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(raw), 500):
            yield raw[i : i + 500]

    assert_problem(post_event(world, topic_id, chunks(), token), 413, "payload-too-large")
    # Just under the limit is fine.
    small = make_event()
    small["filler"] = "x" * (1980 - len(json.dumps(small)))
    assert len(json.dumps(small)) <= 2000
    assert post_event(world, topic_id, small, token).status_code == 202


def test_publishing_without_a_valid_token_is_unauthenticated(world: World) -> None:
    topic_id = add_topic(world)
    world.start()
    assert_problem(post_event(world, topic_id, make_event(), None), 401, "unauthenticated")
    assert_problem(
        post_event(world, topic_id, make_event(), "forged.token.value"), 401, "unauthenticated"
    )
    r = httpx.post(
        f"{world.url}/e1/{topic_id}",
        content=json.dumps(make_event()),
        headers={"authorization": "Basic dXNlcjpwYXNz"},
        timeout=30,
    )
    assert_problem(r, 401, "unauthenticated")


def test_the_same_cloudevents_id_published_twice_is_delivered_once(
    world_db: World, webhook: Webhook, engines: list[Any]
) -> None:
    w = world_db
    topic_id = add_topic(w)
    sub_id = subscribe(w, "cons", topic_id, webhook=webhook.url)
    w.start()
    twice, marker = make_event(1), make_event(2)
    with publisher(w) as pub:
        assert pub.publish(topic_id, twice).status_code == 202
        assert pub.publish(topic_id, twice).status_code == 202
        assert pub.publish(topic_id, marker).status_code == 202
    assert webhook.wait_for_ids([twice["id"], marker["id"]], WAIT) == set()
    engine = engine_of(w, engines)
    assert wait_until(
        lambda: [d["status"] for d in delivery_rows(engine, sub_id)] == ["delivered"] * 2, WAIT
    )
    assert sorted(h.event_id for h in webhook.hits) == sorted([twice["id"], marker["id"]])


# -- webhook delivery -----------------------------------------------------------


def test_a_webhook_receives_the_event_in_structured_mode_with_an_assertion_the_jwks_verifies(
    world_db: World, webhook: Webhook, engines: list[Any]
) -> None:
    w = world_db
    topic_id = add_topic(w)
    sub_id = subscribe(w, "cons", topic_id, webhook=webhook.url)
    w.start()
    event = make_event(7)
    with publisher(w) as pub:
        assert pub.publish(topic_id, event).status_code == 202
    assert webhook.wait_for_ids([event["id"]], WAIT) == set()
    [hit] = webhook.hits
    assert hit.path == "/hook"
    assert hit.headers["content-type"] == "application/cloudevents+json"
    assert hit.event == event  # the very event, its CloudEvents id unchanged
    assert "authorization" not in hit.headers
    engine = engine_of(w, engines)
    assert wait_until(lambda: delivery_rows(engine, sub_id)[0]["status"] == "delivered", WAIT)
    [delivery] = delivery_rows(engine, sub_id)
    assert hit.headers["gsb-delivery-id"] == str(delivery["id"])
    owner, subscriber = w.clients["sabt"].id, w.clients["cons"].id
    verifier = AssertionVerifier(
        f"{w.url}/.well-known/jwks.json", audiences={subscriber}, issuer=w.url
    )
    try:
        claims = verifier.verify(hit.headers["gsb-assertion"], client=hit.headers["gsb-client"])
        # An assertion meant for another subscriber is refused by this one.
        other = AssertionVerifier(
            f"{w.url}/.well-known/jwks.json", audiences={w.clients["other"].id}
        )
        with pytest.raises(InvalidAssertion, match="not for this provider"):
            other.verify(hit.headers["gsb-assertion"])
        other.close()
    finally:
        verifier.close()
    assert (claims.client, claims.service, claims.request_id) == (
        owner,
        subscriber,
        str(delivery["id"]),
    )
    assert hit.headers["gsb-client"] == owner
    assert hit.headers["gsb-service"] == topic_id
    # The delivery is in the message log: subscriber as client, topic as service.
    rows = [r for r in w.log_rows() if r["path"] == f"/deliveries/{delivery['id']}"]
    assert len(rows) == 1
    rec = rows[0]
    assert (rec["client"], rec["service"], rec["method"]) == (subscriber, topic_id, "POST")
    assert (rec["status"], rec["outcome"]) == (200, "ok")
    assert rec["request_id"] == hit.headers["gsb-request-id"]
    assert rec["request_bytes"] == len(hit.body)


def test_every_webhook_subscription_gets_its_own_delivery_and_failures_are_logged(
    world: World, webhook: Webhook
) -> None:
    topic_id = add_topic(world)
    world.add_client("third", "14003000014")
    with Webhook("/second") as failing:
        failing.fail(503)
        ok_sub = subscribe(world, "cons", topic_id, webhook=webhook.url)
        bad_sub = subscribe(world, "third", topic_id, webhook=failing.url)
        world.start()
        event = make_event()
        with publisher(world) as pub:
            assert pub.publish(topic_id, event).status_code == 202
        assert webhook.wait_for_ids([event["id"]], WAIT) == set()
        assert failing.wait(lambda hits: len(hits) >= 1, WAIT)
        engine = world.engine
        assert wait_until(lambda: delivery_rows(engine, ok_sub)[0]["status"] == "delivered", WAIT)
        # The failed attempt is written after the webhook answered: wait for it, not just for the
        # hit, with the webhook still answering 503 (closed, its retries would fail otherwise).
        assert wait_until(
            lambda: "503" in (delivery_rows(engine, bad_sub)[0]["last_error"] or ""), WAIT
        )
    bad = delivery_rows(engine, bad_sub)[0]
    assert bad["status"] == "pending" and bad["attempts"] >= 1
    assert wait_until(
        lambda: any(r["path"] == f"/deliveries/{bad['id']}" for r in world.log_rows()), WAIT
    )
    failed = [r for r in world.log_rows() if r["path"] == f"/deliveries/{bad['id']}"]
    assert failed[0]["client"] == world.clients["third"].id
    assert (failed[0]["status"], failed[0]["outcome"]) == (503, "provider-error")


# -- pulling ------------------------------------------------------------------


def test_a_subscriber_pulls_events_after_a_cursor_page_by_page(world_db: World) -> None:
    w = world_db
    topic_id = add_topic(w)
    engine = w.engine
    try:
        with engine.begin() as conn:
            grants.request_grant(
                conn, w.clients["cons"].id, topic_id, ["notification"], "test", approve=True
            )
    finally:
        engine.dispose()
    w.start()
    with publisher(w) as pub:
        before = make_event(0)
        assert pub.publish(topic_id, before).status_code == 202
        engine = w.engine
        try:
            with engine.begin() as conn:
                sub_id = str(
                    topics.add_subscription(
                        conn, w.clients["cons"].id, topic_id, "test", pull=True
                    )["id"]
                )
        finally:
            engine.dispose()
        token = w.token("cons")
        first = pull(w, sub_id, token)
        assert first.status_code == 200, first.text
        assert first.json() == {"events": [], "next": None}
        published = [make_event(i) for i in range(1, 231)]
        for e in published[:3]:
            assert pub.publish(topic_id, e).status_code == 202
        # No cursor: the events published since the subscription was made.
        r = pull(w, sub_id, token)
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["events"] == published[:3]
        cursor = page["next"]
        assert isinstance(cursor, str) and cursor
        again = pull(w, sub_id, token, cursor).json()
        assert again == {"events": [], "next": cursor}
        for e in published[3:]:
            assert pub.publish(topic_id, e).status_code == 202
    got: list[dict[str, Any]] = []
    sizes = []
    for _ in range(10):
        r = pull(w, sub_id, token, cursor)
        assert r.status_code == 200, r.text
        page = r.json()
        if not page["events"]:
            assert page["next"] == cursor
            break
        sizes.append(len(page["events"]))
        got += page["events"]
        cursor = page["next"]
    assert sizes == [100, 100, 27]
    assert got == published[3:]
    rec = w.log_rows()[-1]
    assert (rec["client"], rec["service"], rec["method"], rec["status"]) == (
        w.clients["cons"].id,
        topic_id,
        "GET",
        200,
    )


def test_pulling_refuses_bad_cursors_other_clients_subscriptions_and_webhook_subscriptions(
    world: World, webhook: Webhook
) -> None:
    topic_id = add_topic(world)
    sub_id = subscribe(world, "cons", topic_id, pull=True)
    hook_sub = subscribe(world, "other", topic_id, webhook=webhook.url)
    world.start()
    token = world.token("cons")
    assert pull(world, sub_id, token).status_code == 200

    def b64(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()

    for cursor in ("!!!", "abc", b64("v2:5"), b64("v1:"), b64("v1:-3"), b64("v1:abc"), "x" * 500):
        assert_problem(pull(world, sub_id, token, cursor), 400, "bad-request")
    # Not theirs: another client's subscription is as good as none.
    assert_problem(pull(world, sub_id, world.token("other")), 404, "unknown-service")
    assert_problem(pull(world, str(uuid.uuid4()), token), 404, "unknown-service")
    assert_problem(pull(world, "not-a-uuid", token), 400, "bad-request")
    assert_problem(pull(world, hook_sub, world.token("other")), 400, "bad-request")
    r = httpx.get(f"{world.url}/e1/subscriptions/{sub_id}/events", timeout=30)
    assert_problem(r, 401, "unauthenticated")


# -- grants -------------------------------------------------------------------


def test_a_subscription_needs_an_approved_grant_on_the_topic(
    world: World, webhook: Webhook
) -> None:
    topic_id = add_topic(world)
    with pytest.raises(Conflict):
        subscribe(world, "cons", topic_id, webhook=webhook.url, grant=False)
    with world.engine.begin() as conn:
        grants.request_grant(conn, world.clients["cons"].id, topic_id, ["notification"], "test")
    with pytest.raises(Conflict):  # requested, not yet approved
        subscribe(world, "cons", topic_id, pull=True, grant=False)
    with world.engine.connect() as conn:
        assert topics.list_subscriptions(conn, topic_id=topic_id) == []


def test_revoking_the_grant_stops_deliveries_even_those_being_retried(
    world: World, webhook: Webhook
) -> None:
    topic_id = add_topic(world)
    hook_sub = subscribe(world, "cons", topic_id, webhook=webhook.url)
    with world.engine.begin() as conn:  # a second, pulled, subscription shows when the bus notices
        pull_sub = str(
            topics.add_subscription(conn, world.clients["cons"].id, topic_id, "test", pull=True)[
                "id"
            ]
        )
    world.start()
    token = world.token("cons")
    first, retried, later = make_event(1), make_event(2), make_event(3)
    with publisher(world) as pub:
        assert pub.publish(topic_id, first).status_code == 202
        assert webhook.wait_for_ids([first["id"]], WAIT) == set()
        webhook.fail()
        assert pub.publish(topic_id, retried).status_code == 202
        assert webhook.wait(lambda hits: any(h.event_id == retried["id"] for h in hits), WAIT)
        with world.engine.begin() as conn:
            grants.revoke_grant(conn, world.clients["cons"].id, topic_id, "test")
        assert wait_until(lambda: pull(world, pull_sub, token).status_code == 403, WAIT)
        webhook.accept()
        assert pub.publish(topic_id, later).status_code == 202
    engine = world.engine
    assert wait_until(
        lambda: [d["status"] for d in delivery_rows(engine, hook_sub)]
        == ["delivered", "dead", "dead"],
        WAIT,
    )
    rows = delivery_rows(engine, hook_sub)
    assert all("grant" in (d["last_error"] or "") for d in rows[1:])
    assert webhook.ok_ids() == {first["id"]}
    assert later["id"] not in {h.event_id for h in webhook.hits}


def test_removing_a_subscription_stops_its_deliveries_even_those_being_retried(
    world: World, webhook: Webhook
) -> None:
    topic_id = add_topic(world)
    sub_id = subscribe(world, "cons", topic_id, webhook=webhook.url)
    world.start()
    webhook.fail()
    retried = make_event(1)
    with publisher(world) as pub:
        assert pub.publish(topic_id, retried).status_code == 202
        assert webhook.wait(lambda hits: len(hits) >= 1, WAIT)
        with world.engine.begin() as conn:
            topics.remove_subscription(conn, sub_id, "test")
        webhook.accept()
        later = make_event(2)
        assert pub.publish(topic_id, later).status_code == 202
    engine = world.engine
    assert wait_until(
        lambda: [d["status"] for d in delivery_rows(engine, sub_id)] == ["dead"], WAIT
    )
    assert webhook.ok_ids() == set()
    assert later["id"] not in {h.event_id for h in webhook.hits}
