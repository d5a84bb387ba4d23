"""The sandbox: deterministic fictional citizens and the agencies' real HTTP providers.

The sandbox app runs on a real uvicorn server on 127.0.0.1 and verifies
assertions against an in-test JWKS server, exactly as it does behind the bus.
"""

from __future__ import annotations

import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dargah.core.identifiers import (
    is_legal_id,
    is_national_code,
    is_postal_code,
    make_national_code,
    parse_member_id,
    parse_service_id,
    parse_subsystem_id,
    parse_topic_id,
)
from dargah.core.keys import generate_ed25519, public_jwk
from dargah.sandbox.agencies import (
    AGENCIES,
    DATA_ITEMS,
    PURPOSES,
    agency,
    catalogue,
    service_ids,
)
from dargah.sandbox.apps import build_sandbox_app
from dargah.sandbox.citizens import Citizen, generate_citizens
from dargah.sandbox.events import birth_registered_event
from dargah.sandbox.openapi import openapi_document

INSTANCE = "TEST"
CLIENT = "TEST/GOV/14003000014/tester"
CITIZENS = generate_citizens()


@pytest.fixture(scope="module")
def citizens() -> list[Citizen]:
    return CITIZENS


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn on a free loopback port, in a thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


# --- citizens ---------------------------------------------------------------------------


def test_the_same_seed_always_gives_the_same_citizens_and_another_seed_others() -> None:
    assert generate_citizens() == CITIZENS
    assert generate_citizens(50, seed=7) == generate_citizens(50, seed=7)
    assert generate_citizens(50, seed=7) != generate_citizens(50, seed=8)
    assert len(CITIZENS) == 1200


def test_national_codes_mobiles_and_postal_codes_are_valid_and_codes_unique() -> None:
    codes = [c.national_code for c in CITIZENS]
    assert all(is_national_code(code) for code in codes)
    assert len(set(codes)) == len(codes)
    assert all(re.fullmatch(r"09[0-9]{9}", c.mobile) for c in CITIZENS)
    assert len({c.mobile for c in CITIZENS}) == len(CITIZENS)
    assert all(is_postal_code(c.postal_code) for c in CITIZENS)


def test_generating_1200_citizens_takes_less_than_half_a_second() -> None:
    best = min(_timed(generate_citizens) for _ in range(3))
    assert best < 0.5


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_about_three_percent_are_deceased_each_with_a_death_date_after_birth() -> None:
    dead = [c for c in CITIZENS if not c.alive]
    assert 0.015 * len(CITIZENS) <= len(dead) <= 0.05 * len(CITIZENS)
    assert all(c.death_date and c.death_date > c.birth_date for c in dead)
    assert all(c.death_date is None for c in CITIZENS if c.alive)


def test_records_are_consistent_with_age_and_status() -> None:
    for c in CITIZENS:
        assert c.first_name and c.last_name and c.father_name and c.address
        assert re.fullmatch(r"1[34][0-9]{2}/[01][0-9]/[0-3][0-9]", c.birth_date_jalali)
        assert (c.tax_file_number is not None) == (c.taxpayer_status != "none")
        if c.taxpayer_status == "active":
            assert re.fullmatch(r"[0-9]{10}", c.tax_file_number or "")
        if c.age() < 18:
            assert c.licence.status == "none" and c.taxpayer_status == "none"
        if c.licence.status == "none":
            assert c.licence.number is None and not c.fines and not c.vehicles
        else:
            assert c.licence.expires is not None
    statuses = {c.licence.status for c in CITIZENS}
    assert statuses == {"valid", "suspended", "expired", "none"}
    assert {c.taxpayer_status for c in CITIZENS} == {"active", "inactive", "none"}
    assert any(f.paid for c in CITIZENS for f in c.fines)
    assert any(not f.paid for c in CITIZENS for f in c.fines)


def test_spouses_and_parents_are_real_citizens_with_plausible_ages() -> None:
    by_code = {c.national_code: c for c in CITIZENS}
    married = [c for c in CITIZENS if c.spouse]
    with_parents = [c for c in CITIZENS if c.father_code]
    assert len(married) >= 200 and len(with_parents) >= 200
    for c in married:
        spouse = by_code[c.spouse or ""]
        assert spouse.spouse == c.national_code and spouse.gender != c.gender
        assert spouse.postal_code == c.postal_code
    for c in with_parents:
        father, mother = by_code[c.father_code or ""], by_code[c.mother_code or ""]
        assert father.spouse == mother.national_code
        assert c.last_name == father.last_name and c.father_name == father.first_name
        assert father.age() - c.age() >= 20 and mother.age() - c.age() >= 18
        assert c.national_code in father.children and c.national_code in mother.children


# --- agencies as data -------------------------------------------------------------------


def test_agencies_have_valid_legal_ids_and_well_formed_ids_on_any_instance() -> None:
    assert len(AGENCIES) >= 5
    assert len({a.legal_id for a in AGENCIES}) == len(AGENCIES)
    for a in AGENCIES:
        assert is_legal_id(a.legal_id) and a.member_class == "GOV"
        assert a.member_id("DEV") == f"DEV/GOV/{a.legal_id}"
        parse_member_id(a.member_id(INSTANCE))
        parse_subsystem_id(a.subsystem_id(INSTANCE))
        assert agency(a.subsystem_code) is a
        for t in a.topics:
            parse_topic_id(f"{a.subsystem_id(INSTANCE)}/{t.code}")
    ids = service_ids(INSTANCE)
    assert len(ids) >= 10
    for sid, (_, s) in ids.items():
        assert str(parse_service_id(sid)) == sid
        assert s.purposes and set(s.purposes) <= set(PURPOSES)
        assert set(s.supplies) <= set(DATA_ITEMS)
        assert s.example_path.startswith("/")


def test_the_catalogue_lists_every_service_with_its_provider_url_and_example() -> None:
    entries = catalogue(INSTANCE, "http://127.0.0.1:9000/")
    assert [e["service"] for e in entries] == list(service_ids(INSTANCE))
    sabt = entries[0]
    assert sabt["url"] == "http://127.0.0.1:9000/sabt"
    assert sabt["example"] == {"method": "GET", "path": "/persons/{subject}"}
    assert sabt["subsystem"] == "TEST/GOV/10100387143/sabt"


def test_every_service_has_an_openapi_31_document_covering_its_operations() -> None:
    for a in AGENCIES:
        for s in a.services:
            doc = openapi_document(a, s)
            assert doc["openapi"] == "3.1.0"
            for op in s.operations:
                assert op.method.lower() in doc["paths"][op.path]
            refs = set(re.findall(r"#/components/schemas/(\w+)", repr(doc)))
            assert refs <= set(doc["components"]["schemas"])


# --- the providers, on a real server ----------------------------------------------------


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    key = generate_ed25519()

    async def jwks(request: Request) -> Response:
        return JSONResponse({"keys": [public_jwk(key)]})

    with serve(Starlette(routes=[Route("/.well-known/jwks.json", jwks)])) as bus_url:
        app = build_sandbox_app(INSTANCE, bus_url, CITIZENS)
        with serve(app) as sandbox_url, httpx.Client(base_url=sandbox_url) as http:
            yield Sandbox(key, bus_url, sandbox_url, app, http)
        app.state.verifier.close()


class Sandbox:
    def __init__(self, key: Any, bus_url: str, url: str, app: Starlette, http: httpx.Client):
        self.key, self.bus_url, self.url, self.app, self.http = key, bus_url, url, app, http

    def headers(self, aud: str, subject: str | None = None, sub: str = CLIENT) -> dict[str, str]:
        now, rid = int(time.time()), str(uuid.uuid4())
        claims = {
            "iss": self.bus_url,
            "sub": sub,
            "aud": aud,
            "rid": rid,
            "iat": now,
            "exp": now + 60,
            "purpose": "service-application",
            "subject_present": subject is not None,
        }
        token = jwt.encode(
            claims, self.key, algorithm="EdDSA", headers={"kid": public_jwk(self.key)["kid"]}
        )
        headers = {
            "GSB-Assertion": token,
            "GSB-Client": sub,
            "GSB-Service": aud,
            "GSB-Request-Id": rid,
            "GSB-Purpose": "service-application",
        }
        if subject is not None:
            headers["GSB-Subject"] = subject
        return headers

    def call(
        self, service_id: str, method: str, path: str, subject: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        a, _ = service_ids(INSTANCE)[service_id]
        return self.http.request(
            method,
            f"/{a.subsystem_code}{path}",
            headers=self.headers(service_id, subject),
            **kwargs,
        )


@pytest.fixture(scope="module")
def sample() -> list[Citizen]:
    rng = random.Random(2024)
    picked = rng.sample(CITIZENS, 20)
    picked += [c for c in CITIZENS if not c.alive][:3]
    picked += [c for c in CITIZENS if c.age() < 5][:3]
    return picked


def test_every_example_path_answers_200_for_a_sample_of_citizens(
    sandbox: Sandbox, sample: list[Citizen]
) -> None:
    for sid, (_, spec) in service_ids(INSTANCE).items():
        for citizen in sample:
            path = spec.example_path.replace("{subject}", citizen.national_code)
            resp = sandbox.call(sid, spec.example_method, path, citizen.national_code)
            assert resp.status_code == 200, (sid, citizen.national_code, resp.text)
            assert resp.headers["content-type"] == "application/json"
    person = sandbox.call(
        f"{agency('sabt').subsystem_id(INSTANCE)}/person-inquiry.v1",
        "GET",
        f"/persons/{sample[0].national_code}",
        sample[0].national_code,
    )
    assert person.json()["first_name"] == sample[0].first_name
    assert sample[0].first_name.encode() in person.content  # UTF-8, not \u-escaped


def test_every_agency_refuses_calls_without_an_assertion(sandbox: Sandbox) -> None:
    code = CITIZENS[0].national_code
    before = sum(m.refused for m in sandbox.app.state.providers.values())
    for sid, (a, spec) in service_ids(INSTANCE).items():
        path = spec.example_path.replace("{subject}", code)
        resp = sandbox.http.get(f"/{a.subsystem_code}{path}", headers={"GSB-Subject": code})
        assert resp.status_code == 401, sid
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["code"] == "unauthenticated"
        assert sandbox.http.get(f"/{a.subsystem_code}/healthz").status_code == 200
    after = sum(m.refused for m in sandbox.app.state.providers.values())
    assert after - before == len(service_ids(INSTANCE))


def test_a_path_called_as_part_of_another_service_is_refused(sandbox: Sandbox) -> None:
    code = CITIZENS[0].national_code
    tax = f"{agency('tax').subsystem_id(INSTANCE)}/taxpayer-inquiry.v1"
    resp = sandbox.http.get(f"/sabt/persons/{code}", headers=sandbox.headers(tax, code))
    assert resp.status_code == 403
    assert resp.json()["type"] == "urn:dargah:sandbox:wrong-service"


def test_gsb_subject_must_name_the_citizen_the_call_asks_about(sandbox: Sandbox) -> None:
    sid = f"{agency('tax').subsystem_id(INSTANCE)}/taxpayer-inquiry.v1"
    one, other = CITIZENS[0].national_code, CITIZENS[1].national_code
    resp = sandbox.call(sid, "GET", f"/taxpayers/{one}", other)
    assert resp.status_code == 403
    assert resp.json()["type"] == "urn:dargah:sandbox:subject-mismatch"


def test_an_unknown_citizen_gets_a_404_with_a_persian_message(sandbox: Sandbox) -> None:
    known = {c.national_code for c in CITIZENS}
    candidates = (make_national_code(f"{n:09d}") for n in range(123456789, 10**9))
    unknown = next(code for code in candidates if is_national_code(code) and code not in known)
    sid = f"{agency('sabt').subsystem_id(INSTANCE)}/person-inquiry.v1"
    resp = sandbox.call(sid, "GET", f"/persons/{unknown}", unknown)
    assert resp.status_code == 404
    assert "یافت نشد" in resp.json()["detail_fa"]


def test_a_welfare_application_gets_a_tracking_code_and_can_be_followed(
    sandbox: Sandbox,
) -> None:
    citizen = next(c for c in CITIZENS if c.alive and c.age() > 70)
    sid = f"{agency('behzisti').subsystem_id(INSTANCE)}/benefit-application.v1"
    body = {"national_code": citizen.national_code, "program": "elderly-pension"}
    made = sandbox.call(sid, "POST", "/applications", citizen.national_code, json=body)
    assert made.status_code == 201, made.text
    app = made.json()
    assert re.fullmatch(r"[0-9]{12}", app["tracking_code"]) and app["status"] == "received"
    tracked = sandbox.call(
        sid, "GET", f"/applications/{app['tracking_code']}", citizen.national_code
    )
    assert tracked.json()["id"] == app["id"]
    listed = sandbox.call(
        sid, "GET", f"/persons/{citizen.national_code}/applications", citizen.national_code
    )
    assert [a["id"] for a in listed.json()["applications"]] == [app["id"]]
    bad = sandbox.call(
        sid,
        "POST",
        "/applications",
        citizen.national_code,
        json={"national_code": citizen.national_code, "program": "yacht"},
    )
    assert bad.status_code == 400


def test_a_registered_birth_is_known_to_every_agency_and_welfare_acts_on_its_event(
    sandbox: Sandbox,
) -> None:
    by_code = {c.national_code: c for c in CITIZENS}
    father = next(c for c in CITIZENS if c.gender == "male" and c.spouse and c.alive)
    mother = by_code[father.spouse or ""]
    sabt = agency("sabt")
    birth = {
        "first_name": "آوا",
        "gender": "female",
        "birth_date": date.today().isoformat(),
        "father_national_code": father.national_code,
        "mother_national_code": mother.national_code,
    }
    made = sandbox.call(
        f"{sabt.subsystem_id(INSTANCE)}/birth-registration.v1", "POST", "/births", json=birth
    )
    assert made.status_code == 201, made.text
    child_code = made.json()["national_code"]
    assert is_national_code(child_code) and made.json()["last_name"] == father.last_name
    address = sandbox.call(
        f"{agency('post').subsystem_id(INSTANCE)}/address-inquiry.v1",
        "GET",
        f"/persons/{child_code}/address",
        child_code,
    )
    assert address.json()["postal_code"] == father.postal_code

    child = sandbox.app.state.directory.get(child_code)
    event = {
        **birth_registered_event(child),
        "id": str(uuid.uuid4()),
        "specversion": "1.0",
        "source": sabt.subsystem_id(INSTANCE),
    }
    welfare = agency("behzisti")
    headers = sandbox.headers(welfare.subsystem_id(INSTANCE), sub=sabt.subsystem_id(INSTANCE))
    delivered = sandbox.http.post("/behzisti/events", json=event, headers=headers)
    assert delivered.status_code == 200, delivered.text
    opened = delivered.json()["application"]
    assert opened["national_code"] == mother.national_code
    assert opened["program"] == "newborn-package" and opened["channel"] == "proactive"
    again = sandbox.http.post("/behzisti/events", json=event, headers=headers)
    assert again.json()["duplicate"] is True
