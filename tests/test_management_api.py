"""The management API (/api/v1/) against a real database: SQLite, and PostgreSQL when reachable.

Each test gets fresh instances. On PostgreSQL each instance lives in its own
schema, owned by a role of the same name whose search_path is that schema; both
are dropped afterwards. (A role rather than ``?options=-csearch_path%3D...`` in
the URL: Alembic's config parser chokes on the ``%`` of an encoded URL.)
Outside CI an unreachable PostgreSQL skips the PostgreSQL cases; with ``CI`` set
it fails them.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from sqlalchemy import Engine, select
from starlette.testclient import TestClient

from dargah.console.api import build_management_app
from dargah.core.keys import generate_ed25519, generate_p256, public_jwk
from dargah.core.settings import Settings
from dargah.registry.instance import check_secret, open_instance
from dargah.store.tables import subsystems

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
PROBLEM = "application/problem+json"

PROVIDER_MEMBER = "DEV/GOV/10100387143"
PROVIDER = f"{PROVIDER_MEMBER}/sabt"
SERVICE = f"{PROVIDER}/person-inquiry.v1"
CONSUMER_MEMBER = "DEV/GOV/14003000014"
CONSUMER = f"{CONSUMER_MEMBER}/portal"


def _postgres_admin() -> psycopg.Connection[Any]:
    """A connection to the test PostgreSQL; skip (fail in CI) when there is none."""
    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}".strip()
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: PostgreSQL is required)")
        pytest.skip(reason)


@pytest.fixture(params=["sqlite", "postgresql"])
def new_settings(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., Settings]]:
    """Settings for fresh, empty instances on the backend under test."""
    admin = _postgres_admin() if request.param == "postgresql" else None
    schemas: list[str] = []

    def make(instance: str = "DEV") -> Settings:
        home = tmp_path / f"home-{len(schemas)}-{secrets.token_hex(3)}"
        if admin is None:
            return Settings(home=home, instance=instance)
        name = f"t_{secrets.token_hex(6)}"
        admin.execute(f"CREATE ROLE {name} LOGIN")
        admin.execute(f"CREATE SCHEMA {name} AUTHORIZATION {name}")
        admin.execute(f"ALTER ROLE {name} SET search_path = {name}")
        schemas.append(name)
        return Settings(
            home=home, instance=instance, database_url=f"postgresql://{name}@127.0.0.1:5432/test"
        )

    yield make
    if admin is not None:
        for name in schemas:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,)
            )
            admin.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
            admin.execute(f"DROP ROLE IF EXISTS {name}")
        admin.close()


@dataclass
class Api:
    client: TestClient  # sends the admin token
    anonymous: TestClient
    engine: Engine
    token: str


@pytest.fixture
def make_api(new_settings: Callable[..., Settings]) -> Iterator[Callable[..., Api]]:
    made: list[Api] = []

    def make(instance: str = "DEV") -> Api:
        settings = new_settings(instance)
        engine, _info, token = open_instance(settings)
        assert token is not None
        app = build_management_app(settings, engine)
        api = Api(
            TestClient(app, headers={"Authorization": f"Bearer {token}"}),
            TestClient(app),
            engine,
            token,
        )
        made.append(api)
        return api

    yield make
    for api in made:
        api.client.close()
        api.anonymous.close()
        api.engine.dispose()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert set(body) == {"type", "title", "status", "code", "request_id", "detail", "detail_fa"}
    assert (body["status"], body["code"], body["type"]) == (status, code, f"urn:gsb:problem:{code}")
    assert body["request_id"] == response.headers["gsb-request-id"]
    return body


def url(ident: str, kind: str) -> str:
    """The URL of a member, subsystem or service: its id spelled out in the path."""
    return f"/api/v1/{kind}/{ident}"


def register_provider_and_consumer(c: TestClient) -> None:
    ok(c.post("/api/v1/members", json={"legal_id": "10100387143", "name": "ثبت احوال"}), 201)
    ok(
        c.post(
            "/api/v1/members",
            json={
                "legal_id": "14003000014",
                "member_class": "GOV",
                "name": "پنجره ملی",
                "name_en": "National portal",
            },
        ),
        201,
    )
    ok(c.post("/api/v1/subsystems", json={"id": PROVIDER, "name": "sabt"}), 201)
    ok(c.post("/api/v1/subsystems", json={"id": CONSUMER}), 201)
    ok(
        c.post(
            "/api/v1/services",
            json={
                "id": SERVICE,
                "base_url": "http://127.0.0.1:9/sabt/",
                "personal_data": True,
                "supplies": ["person.identity"],
                "openapi": {"openapi": "3.1.0", "info": {"title": "x"}},
            },
        ),
        201,
    )


def test_an_operator_takes_a_client_from_registration_to_a_revoked_grant(api: Api) -> None:
    c = api.client
    register_provider_and_consumer(c)
    member = ok(c.get(url(PROVIDER_MEMBER, "members")))
    assert member == {
        **member,
        "id": PROVIDER_MEMBER,
        "member_class": "GOV",
        "legal_id": "10100387143",
        "name": "ثبت احوال",
        "status": "active",
    }
    assert [m["id"] for m in ok(c.get("/api/v1/members"))] == [PROVIDER_MEMBER, CONSUMER_MEMBER]
    assert ok(c.get(url(CONSUMER, "subsystems")))["member_id"] == CONSUMER_MEMBER
    assert [
        s["id"] for s in ok(c.get("/api/v1/subsystems", params={"member": CONSUMER_MEMBER}))
    ] == [CONSUMER]

    # Keys: add an Ed25519 key, rotate it to a P-256 one, revoke that.
    keys_url = url(CONSUMER, "subsystems") + "/keys"
    first = ok(c.post(keys_url, json=public_jwk(generate_ed25519())), 201)
    assert (first["alg"], first["status"], first["jwk"]["kty"]) == ("EdDSA", "active", "OKP")
    second = ok(c.post(f"{keys_url}/{first['kid']}/rotate", json=public_jwk(generate_p256())), 201)
    assert (second["alg"], second["status"]) == ("ES256", "active")
    by_kid = {k["kid"]: k for k in ok(c.get(keys_url))}
    assert by_kid[first["kid"]]["status"] == "revoked" and by_kid[first["kid"]]["revoked_at"]
    assert by_kid[second["kid"]]["status"] == "active"
    revoked = ok(c.post(f"{keys_url}/{second['kid']}/revoke"))
    assert revoked["status"] == "revoked"

    # The service, its provider's OpenAPI document, and a change of settings.
    service = ok(c.get(url(SERVICE, "services")))
    assert service == {
        **service,
        "subsystem_id": PROVIDER,
        "base_url": "http://127.0.0.1:9/sabt",
        "personal_data": True,
        "supplies": ["person.identity"],
        "has_openapi": True,
        "maintenance": False,
        "status": "active",
    }
    assert ok(c.get(url(SERVICE, "services") + "/openapi"))["openapi"] == "3.1.0"
    changed = ok(
        c.patch(
            url(SERVICE, "services"),
            json={
                "maintenance": True,
                "timeout_s": 2.5,
                "supplies": ["person.identity", "person.address"],
                "title": "استعلام فرد",
            },
        )
    )
    assert changed == {
        **changed,
        "maintenance": True,
        "timeout_s": 2.5,
        "title": "استعلام فرد",
        "supplies": ["person.address", "person.identity"],
    }
    assert [s["id"] for s in ok(c.get("/api/v1/services", params={"provider": PROVIDER}))] == [
        SERVICE
    ]

    # A consumer asks, the provider approves, the operator revokes.
    grant = ok(
        c.post(
            "/api/v1/grants",
            json={"client_id": CONSUMER, "service_id": SERVICE, "purposes": ["identity-check"]},
        ),
        201,
    )
    assert (grant["status"], grant["purposes"], grant["decided_by"]) == (
        "requested",
        ["identity-check"],
        None,
    )
    approved = ok(c.post(f"/api/v1/grants/{grant['id']}/approve"))
    assert (approved["status"], approved["decided_by"]) == ("approved", "api:operator")
    assert ok(c.get(f"/api/v1/grants/{grant['id']}"))["status"] == "approved"
    listed = ok(c.get("/api/v1/grants", params={"client": CONSUMER, "status": "approved"}))
    assert [g["id"] for g in listed] == [grant["id"]]
    revoked_grant = ok(
        c.post(f"/api/v1/grants/{grant['id']}/revoke", json={"reason": "no longer needed"})
    )
    assert (revoked_grant["status"], revoked_grant["reason"]) == ("revoked", "no longer needed")
    assert ok(c.get("/api/v1/grants", params={"status": "approved"})) == []

    # Removal and revocation keep the records, with their new status.
    assert ok(c.delete(url(SERVICE, "services")))["status"] == "removed"
    assert ok(c.post(url(CONSUMER, "subsystems") + "/revoke"))["status"] == "revoked"
    assert ok(c.post(url(CONSUMER_MEMBER, "members") + "/revoke"))["status"] == "revoked"


def test_a_rejected_request_keeps_its_reason_and_can_no_longer_be_approved(api: Api) -> None:
    c = api.client
    register_provider_and_consumer(c)
    grant = ok(
        c.post(
            "/api/v1/grants",
            json={
                "client_id": CONSUMER,
                "service_id": SERVICE,
                "purposes": ["identity-check", "audit"],
            },
        ),
        201,
    )
    rejected = ok(
        c.post(
            f"/api/v1/grants/{grant['id']}/reject",
            json={"reason": "هدف با وظایف دستگاه سازگار نیست"},
        )
    )
    assert (rejected["status"], rejected["reason"]) == (
        "rejected",
        "هدف با وظایف دستگاه سازگار نیست",
    )
    problem(c.post(f"/api/v1/grants/{grant['id']}/approve"), 409, "conflict")
    problem(c.post(f"/api/v1/grants/{grant['id']}/revoke"), 409, "conflict")
    # Once rejected, the consumer may ask again.
    again = ok(
        c.post(
            "/api/v1/grants",
            json={"client_id": CONSUMER, "service_id": SERVICE, "purposes": ["identity-check"]},
        ),
        201,
    )
    assert again["id"] != grant["id"]


def test_the_operators_direct_grant_is_approved_at_once(api: Api) -> None:
    c = api.client
    register_provider_and_consumer(c)
    grant = ok(
        c.post(
            "/api/v1/grants",
            json={
                "client_id": CONSUMER,
                "service_id": SERVICE,
                "purposes": ["b", "a", "a"],
                "approve": True,
            },
        ),
        201,
    )
    assert (grant["status"], grant["purposes"], grant["decided_by"]) == (
        "approved",
        ["a", "b"],
        "api:operator",
    )


def test_registering_anything_twice_is_a_conflict(api: Api) -> None:
    c = api.client
    register_provider_and_consumer(c)
    problem(
        c.post("/api/v1/members", json={"legal_id": "10100387143", "name": "x"}), 409, "conflict"
    )
    problem(c.post("/api/v1/subsystems", json={"id": PROVIDER}), 409, "conflict")
    problem(
        c.post("/api/v1/services", json={"id": SERVICE, "base_url": "https://a.example"}),
        409,
        "conflict",
    )
    jwk = public_jwk(generate_ed25519())
    keys_url = url(CONSUMER, "subsystems") + "/keys"
    ok(c.post(keys_url, json=jwk), 201)
    problem(c.post(keys_url, json=jwk), 409, "conflict")
    request = {"client_id": CONSUMER, "service_id": SERVICE, "purposes": ["identity-check"]}
    ok(c.post("/api/v1/grants", json=request), 201)
    problem(c.post("/api/v1/grants", json=request), 409, "conflict")
    # A revoked member's new subsystems are refused too.
    ok(c.post(url(CONSUMER_MEMBER, "members") + "/revoke"))
    problem(c.post("/api/v1/subsystems", json={"id": f"{CONSUMER_MEMBER}/other"}), 409, "conflict")


def test_a_legal_id_with_a_wrong_check_digit_is_a_bad_request_naming_the_field(api: Api) -> None:
    c = api.client
    body = problem(
        c.post("/api/v1/members", json={"legal_id": "10100387144", "name": "x"}), 400, "bad-request"
    )
    assert "body.legal_id" in body["detail"] and "10100387144" in body["detail"]
    body = problem(
        c.post("/api/v1/subsystems", json={"id": "DEV/GOV/10100387144/sabt"}), 400, "bad-request"
    )
    assert "body.id" in body["detail"]
    body = problem(c.get("/api/v1/members/DEV/GOV/10100387144"), 400, "bad-request")
    assert "10100387144" in body["detail"]
    problem(c.get("/api/v1/members/DEV/GOV/10100387143"), 404, "not-found")


def test_malformed_or_weird_input_is_a_bad_request_never_a_server_error(api: Api) -> None:
    c = api.client
    register_provider_and_consumer(c)
    cases: list[tuple[str, str, Any]] = [
        ("POST", "/api/v1/members", {"legal_id": "10100387143", "name": "a\x00b"}),
        ("POST", "/api/v1/members", {"legal_id": "10100387143", "name": "\ud800"}),
        ("POST", "/api/v1/members", {"legal_id": "10100387143", "name": "x" * 201}),
        ("POST", "/api/v1/members", {"legal_id": "10100387143", "name": "x", "extra": 1}),
        ("POST", "/api/v1/grants", {"client_id": CONSUMER, "service_id": SERVICE, "purposes": []}),
        (
            "POST",
            "/api/v1/grants",
            {"client_id": CONSUMER, "service_id": SERVICE, "purposes": ["Not A Purpose"]},
        ),
        ("POST", "/api/v1/services", {"id": f"{PROVIDER}/x", "base_url": "http://[::1"}),
        ("POST", "/api/v1/services", {"id": f"{PROVIDER}/x", "base_url": "http://a:99999/x"}),
        ("POST", "/api/v1/services", {"id": f"{PROVIDER}/x", "base_url": "ftp://a.example"}),
        (
            "POST",
            "/api/v1/services",
            {"id": f"{PROVIDER}/x", "base_url": "http://a.example", "timeout_s": 1e308},
        ),
        ("PATCH", url(SERVICE, "services"), {"timeout_s": None}),
        ("PATCH", url(SERVICE, "services"), {"owner": "me"}),
        ("PUT", "/api/v1/quotas", {"client_id": CONSUMER, "per_second": 0}),
        ("PUT", "/api/v1/quotas", {"client_id": CONSUMER, "per_second": 1, "burst": 10**400}),
        (
            "POST",
            url(CONSUMER, "subsystems") + "/keys",
            {**public_jwk(generate_ed25519()), "d": "private"},
        ),
        (
            "POST",
            url(CONSUMER, "subsystems") + "/keys",
            {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
        ),
        ("POST", url(CONSUMER, "subsystems") + "/keys", {"kty": "RSA", "n": "x", "e": "AQAB"}),
        ("GET", "/api/v1/grants/99999999999", None),
        ("GET", "/api/v1/grants?client=nobody", None),
        ("GET", "/api/v1/audit?limit=0", None),
        ("GET", "/api/v1/audit?target=%00", None),
    ]
    for method, path, body in cases:
        # json.dumps escapes what httpx would refuse to encode (a lone surrogate).
        content = None if body is None else json.dumps(body)
        response = c.request(
            method, path, content=content, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, (method, path, body, response.text)
        problem(response, 400, "bad-request")
    problem(
        c.post(
            "/api/v1/members",
            content=b'{"legal_id": NaN',
            headers={"content-type": "application/json"},
        ),
        400,
        "bad-request",
    )
    problem(
        c.post(
            "/api/v1/members", content=b"[" * 100_000, headers={"content-type": "application/json"}
        ),
        400,
        "bad-request",
    )


def test_a_provider_openapi_document_is_kept_as_sent_whatever_text_it_holds(api: Api) -> None:
    c = api.client
    register_provider_and_consumer(c)
    doc = {"openapi": "3.1.0", "info": {"title": "ثبت \u0000 \U0001f600 \t"}, "paths": {}}
    ok(
        c.post(
            "/api/v1/services",
            json={"id": f"{PROVIDER}/odd.v2", "base_url": "http://a.example", "openapi": doc},
        ),
        201,
    )
    assert ok(c.get(url(f"{PROVIDER}/odd.v2", "services") + "/openapi")) == doc
    ok(c.patch(url(f"{PROVIDER}/odd.v2", "services"), json={"openapi": None}))
    problem(c.get(url(f"{PROVIDER}/odd.v2", "services") + "/openapi"), 404, "not-found")


def test_a_body_over_the_limit_is_refused_before_it_is_read(api: Api) -> None:
    big = b'{"name": "' + b"x" * (6 * 1024 * 1024) + b'"}'
    problem(
        api.client.post(
            "/api/v1/members", content=big, headers={"content-type": "application/json"}
        ),
        413,
        "payload-too-large",
    )


def test_unknown_paths_and_methods_answer_problems(api: Api) -> None:
    problem(api.client.get("/api/v1/nothing-here"), 404, "not-found")
    problem(api.client.get("/not-the-api"), 404, "not-found")
    response = api.client.delete("/api/v1/members")
    problem(response, 405, "method-not-allowed")
    assert response.headers["allow"] == "GET, POST"


def test_the_audit_trail_shows_who_changed_what_with_before_and_after(api: Api) -> None:
    c = api.client
    register_provider_and_consumer(c)
    grant = ok(
        c.post(
            "/api/v1/grants",
            json={"client_id": CONSUMER, "service_id": SERVICE, "purposes": ["identity-check"]},
        ),
        201,
    )
    ok(c.post(f"/api/v1/grants/{grant['id']}/approve"))
    ok(c.patch(url(SERVICE, "services"), json={"maintenance": True}))
    ok(c.post(url(CONSUMER, "subsystems") + "/revoke"))

    entries = ok(c.get("/api/v1/audit"))
    changes = [e for e in entries if e["action"] != "registry:instance:init"]
    assert changes and all(e["actor"] == "api:operator" for e in changes)
    ids = [e["id"] for e in entries]
    assert ids == sorted(ids, reverse=True), "newest first"

    member_add = ok(c.get("/api/v1/audit", params={"target": PROVIDER_MEMBER}))
    assert [e["action"] for e in member_add] == ["registry:member:add"]
    assert member_add[0]["before"] is None and member_add[0]["after"]["name"] == "ثبت احوال"

    on_grant = ok(c.get("/api/v1/audit", params={"target": f"{CONSUMER} -> {SERVICE}"}))
    assert [e["action"] for e in on_grant] == ["registry:grant:approve", "registry:grant:request"]
    assert (on_grant[0]["before"]["status"], on_grant[0]["after"]["status"]) == (
        "requested",
        "approved",
    )

    on_service = ok(c.get("/api/v1/audit", params={"target": SERVICE}))
    assert on_service[0]["action"] == "registry:service:update"
    assert (on_service[0]["before"]["maintenance"], on_service[0]["after"]["maintenance"]) == (
        False,
        True,
    )

    on_client = ok(c.get("/api/v1/audit", params={"target": CONSUMER, "limit": 1}))
    assert len(on_client) == 1 and on_client[0]["action"] == "registry:subsystem:revoke"
    assert (on_client[0]["before"]["status"], on_client[0]["after"]["status"]) == (
        "active",
        "revoked",
    )
    assert ok(c.get("/api/v1/audit", params={"limit": 3})) == entries[:3]


def test_a_refused_change_leaves_no_trace_in_the_registry_or_the_audit_trail(api: Api) -> None:
    c = api.client
    register_provider_and_consumer(c)
    before = ok(c.get("/api/v1/audit", params={"limit": 1000}))
    keys_url = url(CONSUMER, "subsystems") + "/keys"
    # The new key is added, then revoking an unknown kid fails: the whole rotation is undone.
    problem(
        c.post(f"{keys_url}/no-such-kid/rotate", json=public_jwk(generate_ed25519())),
        404,
        "not-found",
    )
    assert ok(c.get(keys_url)) == []
    assert ok(c.get("/api/v1/audit", params={"limit": 1000})) == before


def test_a_sandbox_issues_a_client_secret_once_and_keeps_only_its_hash(api: Api) -> None:
    register_provider_and_consumer(api.client)
    body = ok(api.client.post(url(CONSUMER, "subsystems") + "/secret"))
    assert body["client_id"] == CONSUMER and len(body["client_secret"]) >= 32
    with api.engine.connect() as conn:
        stored = conn.execute(
            select(subsystems.c.secret_hash).where(subsystems.c.id == CONSUMER)
        ).scalar()
    assert stored != body["client_secret"] and check_secret(body["client_secret"], stored)
    assert "client_secret" not in ok(api.client.get(url(CONSUMER, "subsystems")))
    audit = ok(api.client.get("/api/v1/audit", params={"target": CONSUMER}))
    assert body["client_secret"] not in str(audit)
    newer = ok(api.client.post(url(CONSUMER, "subsystems") + "/secret"))
    assert newer["client_secret"] != body["client_secret"]


def test_a_production_instance_refuses_client_secrets(make_api: Callable[..., Api]) -> None:
    api = make_api("IR")
    c = api.client
    assert ok(c.get("/api/v1/instance")) == {
        **ok(c.get("/api/v1/instance")),
        "code": "IR",
        "sandbox": False,
    }
    ok(c.post("/api/v1/members", json={"legal_id": "10100387143", "name": "ثبت احوال"}), 201)
    ok(c.post("/api/v1/subsystems", json={"id": "IR/GOV/10100387143/sabt"}), 201)
    body = problem(c.post("/api/v1/subsystems/IR/GOV/10100387143/sabt/secret"), 400, "bad-request")
    assert "sandbox" in body["detail"]
    # Ids of another instance are refused as well.
    problem(c.post("/api/v1/subsystems", json={"id": PROVIDER}), 404, "not-found")


def test_the_instance_endpoint_tells_its_code_and_that_it_is_a_sandbox(api: Api) -> None:
    info = ok(api.client.get("/api/v1/instance"))
    assert (info["code"], info["sandbox"]) == ("DEV", True)


def test_quotas_are_set_replaced_and_listed_per_client_and_service(api: Api) -> None:
    c = api.client
    register_provider_and_consumer(c)
    wide = ok(c.put("/api/v1/quotas", json={"client_id": CONSUMER, "per_second": 5}))
    assert (wide["service_id"], wide["per_second"], wide["burst"]) == (None, 5.0, 5.0)
    ok(c.put("/api/v1/quotas", json={"client_id": CONSUMER, "per_second": 10, "burst": 20}))
    ok(
        c.put(
            "/api/v1/quotas", json={"client_id": CONSUMER, "service_id": SERVICE, "per_second": 1}
        )
    )
    listed = ok(c.get("/api/v1/quotas", params={"client": CONSUMER}))
    assert [(q["service_id"], q["per_second"], q["burst"]) for q in listed] == [
        (None, 10.0, 20.0),
        (SERVICE, 1.0, 1.0),
    ]
    problem(
        c.put("/api/v1/quotas", json={"client_id": f"{CONSUMER_MEMBER}/ghost", "per_second": 1}),
        404,
        "not-found",
    )


def test_the_openapi_document_is_public_and_every_error_is_a_problem(api: Api) -> None:
    doc = ok(api.anonymous.get("/api/openapi.json"))
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for path, ops in doc["paths"].items():
        assert path.startswith("/api/v1/")
        for method, op in ops.items():
            assert op["security"] == [{"HTTPBearer": []}], (method, path)
            assert "422" not in op["responses"]
            for status in ("400", "401", "500"):
                content = op["responses"][status]["content"]
                assert content == {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert "slashes" in doc["info"]["description"]


@pytest.fixture
def live_server(new_settings: Callable[..., Settings]) -> Iterator[tuple[str, str]]:
    """``dargah.server.build_app`` with the bus and the registry, as ``dargah serve`` composes
    them (the bus hands the API's paths to the management app), on a real uvicorn."""
    from dargah.server import build_app

    settings = new_settings()
    engine, _info, token = open_instance(settings)
    engine.dispose()
    assert token is not None
    app = build_app(settings, ["bus", "registry"])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", token
    server.should_exit = True
    thread.join(10)


def test_the_api_answers_over_real_http_as_the_server_composes_it(
    live_server: tuple[str, str],
) -> None:
    base, token = live_server
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as c:
        ok(c.post("/api/v1/members", json={"legal_id": "10100387143", "name": "ثبت احوال"}), 201)
        assert ok(c.get(url(PROVIDER_MEMBER, "members")))["name"] == "ثبت احوال"
        problem(
            c.get("/api/v1/members", headers={"Authorization": "Bearer nope"}),
            401,
            "unauthenticated",
        )
        rid = "3b241101-e2bb-4255-8caf-4136c566a962"
        response = c.get("/api/v1/nothing", headers={"GSB-Request-Id": rid})
        assert problem(response, 404, "not-found")["request_id"] == rid


def test_concurrent_changes_are_applied_or_refused_never_failed(
    live_server: tuple[str, str],
) -> None:
    base, token = live_server
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers) as c:
        ok(c.post("/api/v1/members", json={"legal_id": "10100387143", "name": "ثبت احوال"}), 201)
    statuses: list[tuple[str, int]] = []

    def work(i: int) -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as c:
            for what, path, body in [
                ("subsystem", "/api/v1/subsystems", {"id": f"{PROVIDER_MEMBER}/s{i:02d}"}),
                ("member", "/api/v1/members", {"legal_id": "14003000014", "name": "پنجره ملی"}),
            ]:
                statuses.append((what, c.post(path, json=body).status_code))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(s for w, s in statuses if w == "subsystem") == [201] * 12
    assert sorted(s for w, s in statuses if w == "member") == [201] + [409] * 11
