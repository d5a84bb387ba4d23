"""The verified level and counting of public services (catalogue.md, smartness.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, insert, select

from dargah.core.settings import Settings
from dargah.oversight import Evidence, assess, counted, gather, verified_level
from dargah.registry.catalogue import definition_level, import_catalogue
from dargah.registry.catalogue.exporter import export_catalogue
from dargah.registry.instance import open_instance
from dargah.sandbox.catalogue_seed import load_seed_catalogue
from dargah.store.tables import (
    deliveries,
    duplicate_decisions,
    members,
    message_log,
    subscriptions,
    subsystems,
    topics,
)

SOURCE = "DEV/GOV/10100387143/sabt/person-inquiry.v1"
TOPIC = "DEV/GOV/10100387143/sabt/birth.v1"


def ev(**kw: Any) -> Evidence:
    """Evidence of a service that supports level 5 and counts, changed by ``kw``."""
    base: dict[str, Any] = {
        "service_id": "10000000001",
        "data_sources": (SOURCE,),
        "proactive_topics": (TOPIC,),
        "reported_applications_online": 100,
        "reported_completed_online": 90,
        "bus_calls": {SOURCE: 80},
        "events_delivered": 3,
        "ratings": 40,
        "satisfied_ratings": 36,
    }
    return Evidence(**(base | kw))


def codes(reasons: list[dict[str, str]]) -> list[str]:
    assert all(set(r) == {"code", "en", "fa"} and r["fa"] for r in reasons)
    return [r["code"] for r in reasons]


# -- verified level ---------------------------------------------------------------------------


def test_full_evidence_keeps_the_definition_level() -> None:
    for level in range(6):
        assert verified_level(level, ev()) == (level, [])


@pytest.mark.parametrize(
    ("change", "level", "code"),
    [
        ({"reported_applications_online": 0}, 1, "no-online-applications"),
        ({"reported_completed_online": 0}, 2, "no-completed-online"),
        ({"bus_calls": {}}, 3, "no-bus-calls"),
        ({"bus_calls": {SOURCE: 0}}, 3, "no-bus-calls"),
        ({"data_sources": (), "bus_calls": {}}, 3, "no-bus-calls"),
        ({"once_only_items": ("person.identity",)}, 3, "once-only"),
        ({"events_delivered": 0}, 4, "no-events-delivered"),
    ],
)
def test_each_missing_observation_caps_the_level(
    change: dict[str, Any], level: int, code: str
) -> None:
    got, reasons = verified_level(5, ev(**change))
    assert got == level
    assert codes(reasons) == [code]


def test_portal_counts_are_evidence_too() -> None:
    e = ev(reported_applications_online=0, reported_completed_online=0, portal_applications=5)
    assert verified_level(5, e)[0] == 2
    e = ev(reported_applications_online=0, reported_completed_online=0)
    e = Evidence(**{**e.__dict__, "portal_applications": 5, "portal_completed": 2})
    assert verified_level(5, e)[0] == 5


def test_every_data_source_must_be_called() -> None:
    other = "DEV/GOV/14003000014/post/address.v1"
    got, reasons = verified_level(4, ev(data_sources=(SOURCE, other)))
    assert got == 3
    assert other in reasons[0]["en"] and SOURCE not in reasons[0]["en"]


def test_a_cap_above_the_definition_level_gives_no_reason() -> None:
    assert verified_level(3, ev(bus_calls={}, events_delivered=0)) == (3, [])
    assert verified_level(1, ev(reported_applications_online=0)) == (1, [])
    assert verified_level(0, Evidence(service_id="1")) == (0, [])


def test_only_the_lowest_cap_is_reported() -> None:
    got, reasons = verified_level(5, ev(reported_applications_online=0, bus_calls={}))
    assert (got, codes(reasons)) == (1, ["no-online-applications"])


def test_no_bus_calls_and_once_only_are_reported_together() -> None:
    got, reasons = verified_level(5, ev(bus_calls={}, once_only_items=("address.postal",)))
    assert (got, codes(reasons)) == (3, ["no-bus-calls", "once-only"])


@given(
    definition=st.integers(0, 5),
    apps=st.integers(0, 3),
    done=st.integers(0, 3),
    calls=st.integers(0, 3),
    sources=st.booleans(),
    once=st.booleans(),
    events=st.integers(0, 3),
)
def test_the_verified_level_never_exceeds_definition_or_evidence(
    definition: int, apps: int, done: int, calls: int, sources: bool, once: bool, events: int
) -> None:
    e = ev(
        reported_applications_online=apps,
        reported_completed_online=done,
        data_sources=(SOURCE,) if sources else (),
        bus_calls={SOURCE: calls},
        once_only_items=("person.identity",) if once else (),
        events_delivered=events,
    )
    level, reasons = verified_level(definition, e)
    assert 0 <= level <= definition
    if not apps:
        assert level <= 1
    if not done:
        assert level <= 2
    if not (sources and calls) or once:
        assert level <= 3
    if not events:
        assert level <= 4
    assert bool(reasons) == (level < definition)


# -- counted ----------------------------------------------------------------------------------


def test_a_smart_well_rated_unique_service_counts() -> None:
    assert counted(4, ev()) == (True, [])
    assert counted(5, ev(ratings=30, satisfied_ratings=24)) == (True, [])  # 80%


@pytest.mark.parametrize(
    ("verified", "change", "expected"),
    [
        (3, {}, ["below-level-4"]),
        (0, {}, ["below-level-4"]),
        (4, {"ratings": 29, "satisfied_ratings": 29}, ["too-few-ratings"]),
        (4, {"ratings": 0, "satisfied_ratings": 0}, ["too-few-ratings"]),
        (4, {"ratings": 100, "satisfied_ratings": 77}, ["low-satisfaction"]),
        (4, {"duplicate_of": "10000000000"}, ["duplicate"]),
        (4, {"bus_calls": {}}, ["direct-connection"]),
        (
            2,
            {"ratings": 0, "satisfied_ratings": 0, "bus_calls": {}, "duplicate_of": "1"},
            ["below-level-4", "too-few-ratings", "duplicate", "direct-connection"],
        ),
    ],
)
def test_each_reason_a_service_is_not_counted(
    verified: int, change: dict[str, Any], expected: list[str]
) -> None:
    ok, reasons = counted(verified, ev(**change))
    assert not ok
    assert codes(reasons) == expected


def test_satisfaction_of_exactly_78_percent_counts() -> None:
    assert counted(4, ev(ratings=100, satisfied_ratings=78))[0]


def test_no_direct_connection_without_applications_or_declared_sources() -> None:
    assert not ev(bus_calls={}, reported_applications_online=0).direct_connection
    assert not ev(bus_calls={}, data_sources=()).direct_connection
    assert ev(bus_calls={}).direct_connection


# -- the database -----------------------------------------------------------------------------


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Engine]:
    engine, _info, _token = open_instance(Settings(home=tmp_path / "home", instance="TEST"))
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps(load_seed_catalogue(), ensure_ascii=False), encoding="utf-8")
    report = import_catalogue(engine, [seed], actor="test", instance="TEST")
    assert report.written and not report.errors
    yield engine
    engine.dispose()


def test_the_seed_catalogue_without_bus_traffic_is_capped_and_nothing_counts(
    seeded: Engine,
) -> None:
    cards = {c["service_id"]: c for c in load_seed_catalogue()["services"]}
    now = datetime(2026, 11, 1, tzinfo=UTC)
    with seeded.connect() as conn:
        evidence = gather(conn, now)
        verdicts = assess(conn, now)
    assert set(evidence) == set(cards) == set(verdicts)
    capped = 0
    for sid, card in cards.items():
        e, v = evidence[sid], verdicts[sid]
        definition = definition_level(card, set())[0]
        why = codes(v.reasons)
        assert e.total_bus_calls == 0 and e.ratings == 0 and e.satisfaction is None
        assert not v.counted and "too-few-ratings" in why
        assert v.verified_level <= min(definition, 3)
        if e.applications_online and e.completed_online and definition >= 4:
            assert v.verified_level == 3
            assert why[0] == "no-bus-calls"
            capped += 1
        elif e.applications_online and not e.completed_online and definition >= 3:
            assert (v.verified_level, why[0]) == (2, "no-completed-online")
        elif not e.applications_online and definition >= 2:
            assert (v.verified_level, why[0]) == (1, "no-online-applications")
        else:
            assert v.verified_level == definition
        if e.applications_online and e.data_sources:
            assert "direct-connection" in why
    assert capped > 0


def test_a_confirmed_duplicate_marks_the_later_service_only(seeded: Engine) -> None:
    a, b = sorted(load_seed_catalogue()["services"][i]["service_id"] for i in (0, 1))
    with seeded.begin() as conn:
        conn.execute(
            insert(duplicate_decisions).values(
                service_a=a, service_b=b, status="confirmed", decided_by="t", decided_at="now"
            )
        )
        evidence = gather(conn, datetime.now(UTC))
    assert evidence[b].duplicate_of == a and evidence[a].duplicate_of is None
    assert "duplicate" in codes(counted(5, evidence[b])[1])


def test_the_export_carries_oversight_verdicts_when_given(seeded: Engine) -> None:
    import io

    out = io.StringIO()
    export_catalogue(seeded, "json", out, verdicts=lambda c: assess(c, datetime.now(UTC)))
    services = json.loads(out.getvalue())["services"]
    assert all(isinstance(s["verified_level"], int) for s in services)
    assert all(s["counted"] is False for s in services)
    assert not any("not-measured" in codes(s["reasons"]) for s in services)
    assert all(s["verified_level"] <= s["definition_level"] for s in services)


def test_bus_calls_and_delivered_events_are_gathered(seeded: Engine) -> None:
    card = next(
        c
        for c in load_seed_catalogue()["services"]
        if c.get("proactive_topics") and c.get("data_sources")
    )
    sid, topic = card["service_id"], card["proactive_topics"][0]
    log = {
        "ts": "2026-10-01T00:00:00.000000Z",
        "request_id": "r",
        "status": 200,
        "request_bytes": 0,
        "response_bytes": 0,
        "duration_us": 0,
        "prev_hash": "0",
        "hash": "0",
    }
    with seeded.begin() as conn:
        member = conn.execute(select(members.c.id)).scalars().first()
        conn.execute(
            insert(subsystems).values(id="c", member_id=member, status="active", created_at="t")
        )
        conn.execute(
            insert(topics).values(
                id=topic, subsystem_id="c", title="t", status="active", created_at="t"
            )
        )
        for seq, (service, outcome) in enumerate(
            [(s, "ok") for s in card["data_sources"]] + [(card["data_sources"][0], "timeout")]
        ):
            conn.execute(
                insert(message_log).values(seq=seq, service=service, outcome=outcome, **log)
            )
        conn.execute(
            insert(subscriptions).values(
                id="s1",
                client_id="c",
                topic_id=topic,
                mode="webhook",
                status="active",
                created_at="t",
            )
        )
        for seq, status in enumerate(["delivered", "delivered", "dead"]):
            conn.execute(
                insert(deliveries).values(
                    subscription_id="s1",
                    event_seq=seq,
                    status=status,
                    attempts=1,
                    created=0.0,
                    next_attempt_at=0.0,
                )
            )
        e = gather(conn, datetime.now(UTC))[sid]
    assert dict(e.bus_calls) == {s: 1 for s in card["data_sources"]}
    assert e.events_delivered == 2
    assert not e.direct_connection
