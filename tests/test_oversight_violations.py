"""Violations: once-only, direct connection and calls without a valid GSB-Assertion."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from dargah.core.errors import NotFound
from dargah.oversight.violations import Finding, find_all, report_unasserted
from tests.harness import World, make_world
from tests.oversight_factory import (
    ADDRESS_SOURCE,
    IDENTITY_SOURCE,
    NOW,
    add_application,
    add_bus_call,
    add_bus_service,
    card,
    load_cards,
    make_instance,
)

ASKS_IDENTITY, ASKS_PHOTO, FETCHES, SILENT = (
    "20700000011",
    "20700000012",
    "20700000013",
    "20700000014",
)
IDENTITY_DOC = {
    "name_fa": "تصویر شناسنامه",
    "name_en": "Copy of the birth certificate",
    "data_item": "person.identity",
    "source": "citizen",
}
PHOTO_DOC = {"name_fa": "عکس", "name_en": "Photo", "data_item": "person.photo", "source": "citizen"}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = make_instance(
        tmp_path,
        [
            card(ASKS_IDENTITY, documents=[IDENTITY_DOC, PHOTO_DOC]),
            card(ASKS_PHOTO, documents=[PHOTO_DOC, {**IDENTITY_DOC, "source": IDENTITY_SOURCE}]),
            card(FETCHES, data_sources=[IDENTITY_SOURCE, ADDRESS_SOURCE]),
            card(SILENT, data_sources=[ADDRESS_SOURCE]),
        ],
    )
    add_bus_service(e, IDENTITY_SOURCE, ["person.identity"])
    add_bus_service(e, ADDRESS_SOURCE, ["address.postal"])
    yield e
    e.dispose()


def of(findings: list[Finding], kind: str) -> dict[str, Finding]:
    return {f.service_id: f for f in findings if f.kind == kind}


def test_a_document_a_bus_service_supplies_is_a_once_only_finding(engine: Engine) -> None:
    with engine.connect() as conn:
        found = of(find_all(conn, NOW), "once-only")
    assert list(found) == [ASKS_IDENTITY]
    f = found[ASKS_IDENTITY]
    assert f.details["data_item"] == "person.identity"
    assert f.details["suppliers"] == [IDENTITY_SOURCE]
    assert IDENTITY_SOURCE in f.evidence_en and "تصویر شناسنامه" in f.evidence_fa
    assert f.fix_en and f.fix_fa and f.member_id.endswith("10100387143")


def test_a_service_asking_only_for_what_no_bus_service_supplies_has_no_finding(
    engine: Engine,
) -> None:
    # ASKS_PHOTO asks for a photo (no bus service supplies one) and takes identity over the bus.
    with engine.connect() as conn:
        findings = find_all(conn, NOW)
    assert ASKS_PHOTO not in {f.service_id for f in findings}


def test_applications_without_bus_traffic_to_any_source_are_a_direct_connection(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        add_application(conn, FETCHES)
        add_application(conn, SILENT)
        add_bus_call(conn, IDENTITY_SOURCE)  # FETCHES uses the bus for one of its sources
        add_bus_call(conn, ADDRESS_SOURCE, outcome="provider-unavailable")  # not a delivery
        found = of(find_all(conn, NOW), "direct-connection")
    assert list(found) == [SILENT]
    assert found[SILENT].details == {"data_sources": [ADDRESS_SOURCE], "applications": 1}
    assert ADDRESS_SOURCE in found[SILENT].evidence_en


def test_no_applications_means_no_direct_connection_finding(engine: Engine) -> None:
    with engine.connect() as conn:
        assert of(find_all(conn, NOW), "direct-connection") == {}


def test_a_providers_report_of_unasserted_calls_is_a_finding_naming_its_users(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        report_unasserted(conn, "test", service=ADDRESS_SOURCE, calls=12, source="10.0.0.7")
        report_unasserted(conn, "test", service=ADDRESS_SOURCE, calls=3)
        found = of(find_all(conn, NOW), "unasserted-calls")
        with pytest.raises(NotFound):
            report_unasserted(conn, "test", service="TEST/GOV/10100387143/sabt/none.v1", calls=1)
    f = found[ADDRESS_SOURCE]
    assert f.details["calls"] == 15 and f.details["reports"] == 2
    assert f.details["public_services"] == [FETCHES, SILENT]
    assert f.member_id == "TEST/GOV/14003000014"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[World]:
    w = make_world(tmp_path / "home", "http://127.0.0.1:9")
    load_cards(w.engine, tmp_path, [card(ASKS_IDENTITY, documents=[IDENTITY_DOC])])
    add_bus_service(w.engine, IDENTITY_SOURCE, ["person.identity"])
    w.start()
    try:
        yield w
    finally:
        w.stop()


def test_providers_report_unasserted_calls_and_findings_are_listed_over_the_api(
    api: World,
) -> None:
    admin = {"Authorization": f"Bearer {api.admin_token}"}
    url = f"{api.url}/api/v1/oversight/unasserted-calls"
    r = httpx.post(url, json={"service": IDENTITY_SOURCE, "calls": 4}, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["member_id"] == "TEST/GOV/10100387143"
    assert (
        httpx.post(url, json={"service": "nonsense", "calls": 4}, headers=admin).status_code == 400
    )
    assert (
        httpx.post(url, json={"service": IDENTITY_SOURCE, "calls": 0}, headers=admin).status_code
        == 400
    )
    assert httpx.post(url, json={"service": IDENTITY_SOURCE, "calls": 4}).status_code == 401
    assert [x["calls"] for x in httpx.get(url, headers=admin).json()] == [4]
    found = httpx.get(f"{api.url}/api/v1/oversight/violations", headers=admin).json()
    assert sorted((f["kind"], f["service_id"]) for f in found) == [
        ("once-only", ASKS_IDENTITY),
        ("unasserted-calls", IDENTITY_SOURCE),
    ]
