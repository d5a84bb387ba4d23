"""The registry's domain functions behave the same on SQLite and PostgreSQL.

Members, subsystems, keys, services, grants and quotas: each change is validated,
kept in the audit trail with before and after, bumps the registry version, and shows
in the snapshot a bus process loads. The migrations create exactly the models' schema.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, func, select

from dargah.core.errors import BadRequest, Conflict, NotFound
from dargah.core.identifiers import InvalidIdentifier, make_legal_id
from dargah.core.keys import generate_ed25519, generate_p256, public_jwk
from dargah.core.settings import Settings
from dargah.registry import audit, grants, members, quotas, services
from dargah.registry.audit import Action
from dargah.registry.instance import check_secret, open_instance
from dargah.registry.snapshot import Snapshot, load_snapshot
from dargah.store.tables import audit_log, metadata, subsystems

T = TypeVar("T")

PROVIDER = "TEST/GOV/10100387143"
CONSUMER = "TEST/GOV/14003000014"
PROV = f"{PROVIDER}/prov"
CONS = f"{CONSUMER}/cons"
SERVICE = f"{PROV}/person-inquiry.v1"
ADMIN = "operator@ito"


@pytest.fixture
def engine(tmp_path: Path, database_url: str) -> Iterator[Engine]:
    eng, info, token = open_instance(
        Settings(home=tmp_path / "home", database_url=database_url, instance="TEST")
    )
    assert info.code == "TEST" and info.sandbox and token
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def populated(engine: Engine) -> Engine:
    """A provider and a consumer member, each with one subsystem, and one service."""
    with engine.begin() as conn:
        members.add_member(conn, PROVIDER, "ثبت احوال", ADMIN)
        members.add_member(conn, CONSUMER, "آزمون", ADMIN)
        members.add_subsystem(conn, PROV, ADMIN)
        members.add_subsystem(conn, CONS, ADMIN)
        services.add_service(conn, SERVICE, "http://127.0.0.1:9/api", ADMIN, personal_data=True)
    return engine


def snapshot(engine: Engine) -> Snapshot:
    with engine.connect() as conn:
        return load_snapshot(conn)


def audit_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())


def change(
    engine: Engine,
    fn: Callable[[Any], T],
    action: Action,
    target: str,
    *,
    before: bool | None = None,
    after: bool = True,
) -> T:
    """Run one registry change in a transaction and check its audit entry and version bump."""
    with engine.connect() as conn:
        version = audit.current_version(conn)
    count = audit_count(engine)
    with engine.begin() as conn:
        result = fn(conn)
    with engine.connect() as conn:
        assert audit.current_version(conn) == version + 1, f"{action} did not bump the version"
        newest = audit.entries(conn, limit=1)[0]
    assert audit_count(engine) == count + 1
    assert newest["action"] == str(action)
    assert newest["target"] == target
    assert newest["actor"] == ADMIN
    assert newest["ts"].endswith("Z")
    if before is not None:
        assert (newest["before"] is not None) == before, newest
    assert (newest["after"] is not None) == after, newest
    assert snapshot(engine).version == version + 1
    return result


def refused(engine: Engine, exc: type[Exception], fn: Callable[[Any], object]) -> Exception:
    """A refused change raises ``exc`` and leaves no trace: no audit entry, no version bump."""
    with engine.connect() as conn:
        version = audit.current_version(conn)
    count = audit_count(engine)
    with pytest.raises(exc) as info, engine.begin() as conn:
        fn(conn)
    with engine.connect() as conn:
        assert audit.current_version(conn) == version
    assert audit_count(engine) == count
    return info.value


# -- members and subsystems -----------------------------------------------------------


def test_members_and_subsystems_are_added_listed_and_revoked_with_an_audit_entry_each(
    engine: Engine,
) -> None:
    row = change(
        engine,
        lambda c: members.add_member(c, PROVIDER, "  ثبت احوال ", ADMIN, "NOCR"),
        Action.MEMBER_ADD,
        PROVIDER,
        before=False,
    )
    assert row["name"] == "ثبت احوال" and row["legal_id"] == "10100387143"
    assert row["member_class"] == "GOV" and row["status"] == "active"
    change(
        engine,
        lambda c: members.add_member(c, CONSUMER, "آزمون", ADMIN),
        Action.MEMBER_ADD,
        CONSUMER,
    )
    with engine.connect() as conn:
        assert [m["id"] for m in members.list_members(conn)] == sorted([PROVIDER, CONSUMER])
        assert members.get_member(conn, PROVIDER)["name_en"] == "NOCR"
        entry = audit.entries(conn, PROVIDER)[0]
        assert entry["after"]["name"] == "ثبت احوال"  # Persian text survives the audit trail

    sub = change(
        engine,
        lambda c: members.add_subsystem(c, PROV, ADMIN, "سامانه"),
        Action.SUBSYSTEM_ADD,
        PROV,
        before=False,
    )
    assert sub == {**sub, "id": PROV, "member_id": PROVIDER, "status": "active", "name": "سامانه"}
    assert "secret_hash" not in sub
    change(engine, lambda c: members.add_subsystem(c, CONS, ADMIN), Action.SUBSYSTEM_ADD, CONS)
    with engine.connect() as conn:
        assert [s["id"] for s in members.list_subsystems(conn)] == sorted([PROV, CONS])
        assert [s["id"] for s in members.list_subsystems(conn, PROVIDER)] == [PROV]
        assert members.get_subsystem(conn, CONS)["member_id"] == CONSUMER
    snap = snapshot(engine)
    assert snap.clients[PROV].active and snap.clients[CONS].active

    revoked = change(
        engine,
        lambda c: members.revoke_subsystem(c, CONS, ADMIN),
        Action.SUBSYSTEM_REVOKE,
        CONS,
        before=True,
    )
    assert revoked["status"] == "revoked"
    with engine.connect() as conn:
        entry = audit.entries(conn, CONS)[0]
    assert entry["before"]["status"] == "active" and entry["after"]["status"] == "revoked"
    assert not snapshot(engine).clients[CONS].active

    # a revoked member takes its subsystems with it
    change(
        engine,
        lambda c: members.set_member_status(c, PROVIDER, "revoked", ADMIN),
        Action.MEMBER_REVOKE,
        PROVIDER,
        before=True,
    )
    assert not snapshot(engine).clients[PROV].active
    refused(engine, Conflict, lambda c: members.add_subsystem(c, f"{PROVIDER}/second", ADMIN))
    change(
        engine,
        lambda c: members.set_member_status(c, PROVIDER, "active", ADMIN),
        Action.MEMBER_UPDATE,
        PROVIDER,
        before=True,
    )
    assert snapshot(engine).clients[PROV].active


def test_malformed_duplicate_foreign_and_unknown_members_and_subsystems_are_refused(
    engine: Engine,
) -> None:
    change(
        engine,
        lambda c: members.add_member(c, PROVIDER, "ثبت احوال", ADMIN),
        Action.MEMBER_ADD,
        PROVIDER,
    )
    refused(engine, Conflict, lambda c: members.add_member(c, PROVIDER, "again", ADMIN))
    refused(
        engine,
        InvalidIdentifier,
        lambda c: members.add_member(c, "TEST/GOV/10100387144", "x", ADMIN),
    )
    refused(
        engine,
        InvalidIdentifier,
        lambda c: members.add_member(c, "TEST/XXX/14003000014", "x", ADMIN),
    )
    refused(engine, BadRequest, lambda c: members.add_member(c, "DEV/GOV/14003000014", "x", ADMIN))
    refused(engine, BadRequest, lambda c: members.add_member(c, CONSUMER, "   ", ADMIN))
    refused(engine, NotFound, lambda c: members.add_subsystem(c, CONS, ADMIN))  # no such member
    refused(engine, InvalidIdentifier, lambda c: members.add_subsystem(c, f"{PROVIDER}/X", ADMIN))
    refused(engine, InvalidIdentifier, lambda c: members.add_subsystem(c, f"{PROVIDER}/a", ADMIN))
    change(engine, lambda c: members.add_subsystem(c, PROV, ADMIN), Action.SUBSYSTEM_ADD, PROV)
    refused(engine, Conflict, lambda c: members.add_subsystem(c, PROV, ADMIN))
    with engine.connect() as conn:
        with pytest.raises(NotFound):
            members.get_member(conn, CONSUMER)
        with pytest.raises(NotFound):
            members.get_subsystem(conn, CONS)
    refused(engine, NotFound, lambda c: members.revoke_subsystem(c, CONS, ADMIN))
    refused(engine, NotFound, lambda c: members.set_member_status(c, CONSUMER, "revoked", ADMIN))


def test_client_secrets_are_hashed_replace_each_other_and_appear_in_the_snapshot(
    populated: Engine,
) -> None:
    first = change(
        populated,
        lambda c: members.new_client_secret(c, CONS, ADMIN),
        Action.SUBSYSTEM_SECRET,
        CONS,
    )
    second = change(
        populated,
        lambda c: members.new_client_secret(c, CONS, ADMIN),
        Action.SUBSYSTEM_SECRET,
        CONS,
    )
    assert first != second and len(second) >= 40
    with populated.connect() as conn:
        stored = conn.execute(
            select(subsystems.c.secret_hash).where(subsystems.c.id == CONS)
        ).scalar()
        trail = json.dumps(audit.entries(conn, CONS), ensure_ascii=False)
    assert check_secret(second, stored) and not check_secret(first, stored)
    assert second not in trail and first not in trail and stored not in trail
    assert snapshot(populated).clients[CONS].secret_hash == stored


# -- keys ---------------------------------------------------------------------------


def test_keys_are_added_rotated_and_revoked_and_private_or_duplicate_keys_are_refused(
    populated: Engine,
) -> None:
    ed, ec = public_jwk(generate_ed25519()), public_jwk(generate_p256())
    k1 = change(
        populated,
        lambda c: members.add_key(c, CONS, ed, ADMIN),
        Action.KEY_ADD,
        f"{CONS}#{ed['kid']}",
        before=False,
    )
    assert k1["kid"] == ed["kid"] and k1["alg"] == "EdDSA" and k1["status"] == "active"
    assert k1["jwk"] == {"kty": "OKP", "crv": "Ed25519", "x": ed["x"]}
    snap = snapshot(populated)
    assert snap.keys[ed["kid"]].active and snap.keys[ed["kid"]].client == CONS

    # the same key twice, for this or any other subsystem, is refused
    refused(populated, Conflict, lambda c: members.add_key(c, CONS, ed, ADMIN))
    refused(populated, Conflict, lambda c: members.add_key(c, PROV, ed, ADMIN))
    # a private key is refused, and never stored
    private = {**public_jwk(generate_ed25519()), "d": "c2VjcmV0"}
    refused(populated, BadRequest, lambda c: members.add_key(c, CONS, private, ADMIN))
    for bad in (
        {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
        {"kty": "OKP", "crv": "Ed25519", "x": "AA"},
        {"kty": "EC", "crv": "P-256", "x": ed["x"]},
        {"kty": "OKP", "crv": "X25519", "x": ed["x"]},
    ):
        refused(populated, BadRequest, lambda c, bad=bad: members.add_key(c, CONS, bad, ADMIN))
    refused(populated, NotFound, lambda c: members.add_key(c, f"{CONSUMER}/nobody", ec, ADMIN))

    # rotation: the new key is active, the old one revoked, in one transaction
    with populated.connect() as conn:
        version = audit.current_version(conn)
    with populated.begin() as conn:
        k2 = members.rotate_key(conn, CONS, ed["kid"], ec, ADMIN)
    assert k2["kid"] == ec["kid"] and k2["alg"] == "ES256"
    with populated.connect() as conn:
        assert audit.current_version(conn) > version
        keys = {k["kid"]: k for k in members.list_keys(conn, CONS)}
        actions = [e["action"] for e in audit.entries(conn, limit=2)]
    assert keys[ed["kid"]]["status"] == "revoked" and keys[ed["kid"]]["revoked_at"]
    assert keys[ec["kid"]]["status"] == "active"
    assert sorted(actions) == sorted([str(Action.KEY_ADD), str(Action.KEY_REVOKE)])
    snap = snapshot(populated)
    assert not snap.keys[ed["kid"]].active and snap.keys[ec["kid"]].active

    # rotating away a key that is not there changes nothing at all
    other = public_jwk(generate_ed25519())
    refused(populated, NotFound, lambda c: members.rotate_key(c, CONS, "no-such-kid", other, ADMIN))
    with populated.connect() as conn:
        assert other["kid"] not in {k["kid"] for k in members.list_keys(conn, CONS)}

    # revoking: only the owner's key, and it shows in the snapshot
    refused(populated, NotFound, lambda c: members.revoke_key(c, PROV, ec["kid"], ADMIN))
    out = change(
        populated,
        lambda c: members.revoke_key(c, CONS, ec["kid"], ADMIN),
        Action.KEY_REVOKE,
        f"{CONS}#{ec['kid']}",
        before=True,
    )
    assert out["status"] == "revoked"
    assert not snapshot(populated).keys[ec["kid"]].active

    # a revoked subsystem takes no new key
    change(
        populated, lambda c: members.revoke_subsystem(c, CONS, ADMIN), Action.SUBSYSTEM_REVOKE, CONS
    )
    refused(populated, Conflict, lambda c: members.add_key(c, CONS, other, ADMIN))


# -- services -----------------------------------------------------------------------


def test_services_are_added_updated_and_removed_with_their_settings_validated(
    populated: Engine,
) -> None:
    sid = f"{PROV}/address.v2"
    doc = {"openapi": "3.1.0", "info": {"title": "آدرس", "version": "2"}, "paths": {}}
    row = change(
        populated,
        lambda c: services.add_service(
            c,
            sid,
            "https://provider.example:8443/api/",
            ADMIN,
            title="نشانی",
            timeout_s=5,
            max_body=1024,
            openapi=json.dumps(doc),
            supplies=["address.postal", "address.postal", "person.identity"],
        ),
        Action.SERVICE_ADD,
        sid,
        before=False,
    )
    assert row["base_url"] == "https://provider.example:8443/api"
    assert row["supplies"] == ["address.postal", "person.identity"]
    assert row["timeout_s"] == 5.0 and row["max_body"] == 1024 and row["has_openapi"]
    assert row["title"] == "نشانی" and not row["personal_data"] and row["status"] == "active"
    with populated.connect() as conn:
        assert json.loads(services.get_openapi(conn, sid) or "") == doc
        assert services.get_service(conn, sid)["supplies"] == row["supplies"]
        assert [s["id"] for s in services.list_services(conn, PROV)] == sorted([sid, SERVICE])
        assert services.list_services(conn, CONS) == []
    entry = snapshot(populated).services[sid]
    assert (entry.scheme, entry.host, entry.port, entry.base_path) == (
        "https",
        "provider.example",
        8443,
        "/api",
    )
    assert entry.timeout_s == 5.0 and entry.max_body == 1024 and entry.active
    assert entry.provider == PROV and entry.title == "نشانی"

    updated = change(
        populated,
        lambda c: services.update_service(
            c,
            sid,
            {
                "maintenance": True,
                "timeout_s": 1.5,
                "base_url": "http://10.0.0.1/v2/",
                "supplies": ["person.address"],
            },
            ADMIN,
        ),
        Action.SERVICE_UPDATE,
        sid,
        before=True,
    )
    assert updated["maintenance"] and updated["base_url"] == "http://10.0.0.1/v2"
    with populated.connect() as conn:
        entry_audit = audit.entries(conn, sid)[0]
    assert entry_audit["before"]["timeout_s"] == 5.0 and entry_audit["after"]["timeout_s"] == 1.5
    entry = snapshot(populated).services[sid]
    assert entry.maintenance and entry.timeout_s == 1.5 and entry.port == 80
    assert entry.base_path == "/v2" and entry.scheme == "http"

    refused(populated, BadRequest, lambda c: services.update_service(c, sid, {"id": "x"}, ADMIN))
    refused(
        populated,
        BadRequest,
        lambda c: services.update_service(c, sid, {"subsystem_id": CONS}, ADMIN),
    )
    refused(
        populated, BadRequest, lambda c: services.update_service(c, sid, {"max_body": 0}, ADMIN)
    )
    refused(
        populated,
        NotFound,
        lambda c: services.update_service(c, f"{PROV}/nothing", {"maintenance": True}, ADMIN),
    )

    removed = change(
        populated,
        lambda c: services.remove_service(c, sid, ADMIN),
        Action.SERVICE_REMOVE,
        sid,
        before=True,
    )
    assert removed["status"] == "removed"
    assert not snapshot(populated).services[sid].active
    refused(populated, Conflict, lambda c: services.add_service(c, sid, "http://h", ADMIN))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("base_url", "ftp://provider/x"),
        ("base_url", "provider/x"),
        ("base_url", "http:///nohost"),
        ("base_url", ""),
        ("base_url", "http://provider:0/x"),
        ("base_url", "http://provider/x?token=1"),
        ("timeout_s", 0),
        ("timeout_s", -1),
        ("timeout_s", 301),
        ("timeout_s", math.nan),
        ("timeout_s", math.inf),
        ("max_body", 0),
        ("max_body", -5),
        ("max_body", (1 << 30) + 1),
        ("supplies", ["person"]),
        ("supplies", ["Person.Identity"]),
        ("supplies", ["person.identity", "person..x"]),
        ("supplies", ["person.identity."]),
        ("openapi", "{not json"),
        ("openapi", "[1, 2]"),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_a_service_with_an_invalid_setting_is_refused(
    populated: Engine, field: str, value: Any
) -> None:
    kwargs: dict[str, Any] = {"base_url": "http://127.0.0.1:9/x"}
    kwargs[field] = value
    base_url = kwargs.pop("base_url")
    refused(
        populated,
        BadRequest,
        lambda c: services.add_service(c, f"{PROV}/bad.v1", base_url, ADMIN, **kwargs),
    )
    if field != "base_url":
        refused(
            populated,
            BadRequest,
            lambda c: services.update_service(c, SERVICE, {field: value}, ADMIN),
        )
    else:
        refused(
            populated,
            BadRequest,
            lambda c: services.update_service(c, SERVICE, {"base_url": value}, ADMIN),
        )


def test_a_service_must_belong_to_an_active_existing_subsystem_and_have_a_valid_id(
    populated: Engine,
) -> None:
    refused(
        populated,
        InvalidIdentifier,
        lambda c: services.add_service(c, f"{PROV}/Bad", "http://h", ADMIN),
    )
    refused(
        populated,
        InvalidIdentifier,
        lambda c: services.add_service(c, f"{PROV}/x/y", "http://h", ADMIN),
    )
    refused(
        populated,
        NotFound,
        lambda c: services.add_service(c, f"{PROVIDER}/ghost/svc", "http://h", ADMIN),
    )
    change(
        populated, lambda c: members.revoke_subsystem(c, PROV, ADMIN), Action.SUBSYSTEM_REVOKE, PROV
    )
    refused(
        populated, Conflict, lambda c: services.add_service(c, f"{PROV}/late.v1", "http://h", ADMIN)
    )


@pytest.mark.parametrize(
    "base_url", ["http://provider:99999/x", "http://provider:http/x", "http://[::1/x"]
)
def test_a_service_url_with_an_impossible_host_or_port_is_refused_and_never_breaks_the_snapshot(
    populated: Engine,
    base_url: str,
) -> None:
    # (a bus process parses every base URL when it loads the snapshot: one such row used to
    # make load_snapshot raise ValueError in every process)
    refused(
        populated, BadRequest, lambda c: services.add_service(c, f"{PROV}/port.v1", base_url, ADMIN)
    )
    refused(
        populated,
        BadRequest,
        lambda c: services.update_service(c, SERVICE, {"base_url": base_url}, ADMIN),
    )
    snapshot(populated)
    with populated.connect() as conn:
        assert all(s["id"] != f"{PROV}/port.v1" for s in services.list_services(conn))


# -- grants -------------------------------------------------------------------------


def test_a_grant_goes_from_request_to_approval_to_revocation_and_reaches_the_snapshot(
    populated: Engine,
) -> None:
    target = f"{CONS} -> {SERVICE}"
    g = change(
        populated,
        lambda c: grants.request_grant(
            c, CONS, SERVICE, ["tax-audit", "identity-verification", "tax-audit"], ADMIN
        ),
        Action.GRANT_REQUEST,
        target,
        before=False,
    )
    assert g["status"] == "requested" and g["purposes"] == ["identity-verification", "tax-audit"]
    assert g["decided_by"] is None and g["decided_at"] is None
    assert (CONS, SERVICE) not in snapshot(populated).grants  # deny until approved

    # a second request while one is live is a conflict
    refused(populated, Conflict, lambda c: grants.request_grant(c, CONS, SERVICE, ["x"], ADMIN))

    approved = change(
        populated,
        lambda c: grants.decide(c, g["id"], "approve", ADMIN),
        Action.GRANT_APPROVE,
        target,
        before=True,
    )
    assert approved["status"] == "approved" and approved["decided_by"] == ADMIN
    assert snapshot(populated).grants[(CONS, SERVICE)] == {"identity-verification", "tax-audit"}
    with populated.connect() as conn:
        assert [x["id"] for x in grants.list_grants(conn, client_id=CONS)] == [g["id"]]
        assert grants.list_grants(conn, service_id=SERVICE, status="approved")[0]["id"] == g["id"]
        assert grants.list_grants(conn, status="requested") == []
        entry = audit.entries(conn, target)[0]
    assert entry["before"]["status"] == "requested" and entry["after"]["status"] == "approved"

    for decision in ("approve", "reject"):
        refused(populated, Conflict, lambda c, d=decision: grants.decide(c, g["id"], d, ADMIN))

    # the operator's "grant add" on a live grant replaces its purposes
    change(
        populated,
        lambda c: grants.request_grant(c, CONS, SERVICE, ["statistics"], ADMIN, approve=True),
        Action.GRANT_APPROVE,
        target,
        before=True,
    )
    assert snapshot(populated).grants[(CONS, SERVICE)] == {"statistics"}

    revoked = change(
        populated,
        lambda c: grants.revoke_grant(c, CONS, SERVICE, ADMIN),
        Action.GRANT_REVOKE,
        target,
        before=True,
    )
    assert revoked["status"] == "revoked"
    assert (CONS, SERVICE) not in snapshot(populated).grants
    for decision in ("approve", "reject", "revoke"):
        refused(populated, Conflict, lambda c, d=decision: grants.decide(c, g["id"], d, ADMIN))
    refused(populated, NotFound, lambda c: grants.revoke_grant(c, CONS, SERVICE, ADMIN))

    # after a revocation, a new request starts a new grant
    g2 = change(
        populated,
        lambda c: grants.request_grant(c, CONS, SERVICE, ["statistics"], ADMIN),
        Action.GRANT_REQUEST,
        target,
    )
    assert g2["id"] != g["id"]


def test_a_rejected_or_withdrawn_request_never_becomes_a_grant(populated: Engine) -> None:
    target = f"{CONS} -> {SERVICE}"
    g = change(
        populated,
        lambda c: grants.request_grant(c, CONS, SERVICE, ["audit"], ADMIN),
        Action.GRANT_REQUEST,
        target,
    )
    rejected = change(
        populated,
        lambda c: grants.decide(c, g["id"], "reject", ADMIN, "no basis"),
        Action.GRANT_REJECT,
        target,
        before=True,
    )
    assert rejected["status"] == "rejected" and rejected["reason"] == "no basis"
    for decision in ("approve", "reject", "revoke"):
        refused(populated, Conflict, lambda c, d=decision: grants.decide(c, g["id"], d, ADMIN))
    assert (CONS, SERVICE) not in snapshot(populated).grants

    g2 = change(
        populated,
        lambda c: grants.request_grant(c, CONS, SERVICE, ["audit"], ADMIN),
        Action.GRANT_REQUEST,
        target,
    )
    change(
        populated,
        lambda c: grants.decide(c, g2["id"], "revoke", ADMIN),
        Action.GRANT_REVOKE,
        target,
    )
    refused(populated, Conflict, lambda c: grants.decide(c, g2["id"], "approve", ADMIN))
    assert (CONS, SERVICE) not in snapshot(populated).grants
    refused(populated, NotFound, lambda c: grants.decide(c, 999_999, "approve", ADMIN))


def test_a_grant_request_with_bad_purposes_or_unknown_parties_is_refused(populated: Engine) -> None:
    for purposes in ([], ["Tax"], ["tax audit"], ["x" * 65], ["ok", "-bad"], ["مالیات"]):
        refused(
            populated,
            BadRequest,
            lambda c, p=purposes: grants.request_grant(c, CONS, SERVICE, p, ADMIN),
        )
    refused(
        populated,
        NotFound,
        lambda c: grants.request_grant(c, f"{CONSUMER}/ghost", SERVICE, ["a"], ADMIN),
    )
    refused(
        populated,
        NotFound,
        lambda c: grants.request_grant(c, CONS, f"{PROV}/ghost.v1", ["a"], ADMIN),
    )
    refused(
        populated,
        InvalidIdentifier,
        lambda c: grants.request_grant(c, "cons", SERVICE, ["a"], ADMIN),
    )
    refused(
        populated,
        InvalidIdentifier,
        lambda c: grants.request_grant(c, CONS, "person-inquiry", ["a"], ADMIN),
    )


def test_an_unknown_grant_decision_is_a_bad_request(populated: Engine) -> None:
    with populated.begin() as conn:
        g = grants.request_grant(conn, CONS, SERVICE, ["audit"], ADMIN)
    refused(populated, BadRequest, lambda c: grants.decide(c, g["id"], "allow", ADMIN))


# -- quotas -------------------------------------------------------------------------


def test_quotas_are_set_updated_and_removed_and_reach_the_snapshot(populated: Engine) -> None:
    row = change(
        populated,
        lambda c: quotas.set_quota(c, CONS, 10, ADMIN),
        Action.QUOTA_SET,
        CONS,
        before=False,
    )
    assert row["per_second"] == 10.0 and row["burst"] == 10.0 and row["service_id"] == ""
    change(
        populated,
        lambda c: quotas.set_quota(c, CONS, 0.5, ADMIN, service_id=SERVICE, burst=3),
        Action.QUOTA_SET,
        f"{CONS} {SERVICE}",
        before=False,
    )
    snap = snapshot(populated)
    client_wide, per_service = snap.quotas[(CONS, None)], snap.quotas[(CONS, SERVICE)]
    assert (client_wide.per_second, client_wide.burst) == (10.0, 10.0)
    assert (per_service.per_second, per_service.burst) == (0.5, 3.0)

    change(
        populated,
        lambda c: quotas.set_quota(c, CONS, 0.25, ADMIN),
        Action.QUOTA_SET,
        CONS,
        before=True,
    )
    with populated.connect() as conn:
        listed = quotas.list_quotas(conn, CONS)
        entry = audit.entries(conn, CONS)[0]
    assert [(q["service_id"], q["per_second"], q["burst"]) for q in listed] == [
        ("", 0.25, 1.0),
        (SERVICE, 0.5, 3.0),
    ]
    assert entry["before"]["per_second"] == 10.0 and entry["after"]["per_second"] == 0.25
    assert snapshot(populated).quotas[(CONS, None)].burst == 1.0

    for per_second, burst in ((0, None), (-1, None), (math.nan, None), (1, 0.5), (1, 0)):
        refused(
            populated,
            BadRequest,
            lambda c, r=per_second, b=burst: quotas.set_quota(c, CONS, r, ADMIN, burst=b),
        )
    refused(populated, NotFound, lambda c: quotas.set_quota(c, f"{CONSUMER}/ghost", 1, ADMIN))
    refused(
        populated,
        InvalidIdentifier,
        lambda c: quotas.set_quota(c, CONS, 1, ADMIN, service_id="nope"),
    )

    change(
        populated,
        lambda c: quotas.remove_quota(c, CONS, ADMIN, SERVICE),
        Action.QUOTA_REMOVE,
        f"{CONS} {SERVICE}",
        before=True,
        after=False,
    )
    assert (CONS, SERVICE) not in snapshot(populated).quotas
    refused(populated, NotFound, lambda c: quotas.remove_quota(c, CONS, ADMIN, SERVICE))
    change(
        populated,
        lambda c: quotas.remove_quota(c, CONS, ADMIN),
        Action.QUOTA_REMOVE,
        CONS,
        after=False,
    )
    assert snapshot(populated).quotas == {}


@pytest.mark.parametrize(("per_second", "burst"), [(1.0, math.nan), (math.inf, None)])
def test_a_quota_that_is_not_a_finite_number_is_refused(
    populated: Engine, per_second: float, burst: float | None
) -> None:
    refused(
        populated, BadRequest, lambda c: quotas.set_quota(c, CONS, per_second, ADMIN, burst=burst)
    )


# -- the audit trail and the snapshot as a whole ------------------------------------


def test_every_change_is_in_the_audit_trail_in_order_and_the_snapshot_tracks_the_version(
    populated: Engine,
) -> None:
    key = public_jwk(generate_ed25519())
    steps: list[tuple[Callable[[Any], object], Action]] = [
        (lambda c: members.add_key(c, CONS, key, ADMIN), Action.KEY_ADD),
        (lambda c: grants.request_grant(c, CONS, SERVICE, ["audit"], ADMIN), Action.GRANT_REQUEST),
        (lambda c: grants.decide(c, 1, "approve", ADMIN), Action.GRANT_APPROVE),
        (lambda c: quotas.set_quota(c, CONS, 5, ADMIN), Action.QUOTA_SET),
        (
            lambda c: services.update_service(c, SERVICE, {"maintenance": True}, ADMIN),
            Action.SERVICE_UPDATE,
        ),
        (lambda c: members.revoke_key(c, CONS, key["kid"], ADMIN), Action.KEY_REVOKE),
    ]
    with populated.connect() as conn:
        start_version = audit.current_version(conn)
        start_id = audit.entries(conn, limit=1)[0]["id"]
    for i, (fn, _action) in enumerate(steps, 1):
        with populated.begin() as conn:
            fn(conn)
        snap = snapshot(populated)
        assert snap.version == start_version + i
    with populated.connect() as conn:
        trail = [e for e in reversed(audit.entries(conn, limit=50)) if e["id"] > start_id]
    assert [e["action"] for e in trail] == [str(a) for _, a in steps]
    assert [e["id"] for e in trail] == sorted(e["id"] for e in trail)
    assert [e["ts"] for e in trail] == sorted(e["ts"] for e in trail)
    snap = snapshot(populated)
    assert snap.services[SERVICE].maintenance and snap.services[SERVICE].personal_data
    assert snap.grants[(CONS, SERVICE)] == {"audit"} and snap.quotas[(CONS, None)].per_second == 5
    assert not snap.keys[key["kid"]].active
    assert snap.service_ids_for(CONS) == [SERVICE] and snap.service_ids_for(PROV) == []


def test_token_audit_entries_do_not_bump_the_registry_version(populated: Engine) -> None:
    with populated.connect() as conn:
        version = audit.current_version(conn)
    with populated.begin() as conn:
        audit.record(conn, CONS, Action.TOKEN_ISSUE, CONS, None, {"detail": "issued"}, bump=False)
    with populated.connect() as conn:
        assert audit.current_version(conn) == version
        assert audit.entries(conn, CONS)[0]["action"] == str(Action.TOKEN_ISSUE)


def test_a_change_rolled_back_leaves_neither_an_audit_entry_nor_a_version_bump(
    populated: Engine,
) -> None:
    class Abort(Exception):
        pass

    count = audit_count(populated)
    with populated.connect() as conn:
        version = audit.current_version(conn)
    with pytest.raises(Abort), populated.begin() as conn:
        members.add_member(conn, f"TEST/NGO/{make_legal_id('1400765091')}", "NGO", ADMIN)
        raise Abort
    assert audit_count(populated) == count
    with populated.connect() as conn:
        assert audit.current_version(conn) == version
        assert len(members.list_members(conn)) == 2


# -- migrations -----------------------------------------------------------------------


def test_the_migrated_schema_matches_the_models_exactly(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        diff = compare_metadata(context, metadata)
    assert diff == [], "\n".join(map(str, diff))


def test_migrating_an_existing_instance_again_changes_nothing(
    tmp_path: Path, database_url: str
) -> None:
    settings = Settings(home=tmp_path / "home", database_url=database_url, instance="TEST")
    eng, _info, token = open_instance(settings)
    assert token is not None
    with eng.begin() as conn:
        members.add_member(conn, PROVIDER, "ثبت احوال", ADMIN)
    eng.dispose()
    eng2, info, token2 = open_instance(settings)
    try:
        assert token2 is None and info.code == "TEST"
        with eng2.connect() as conn:
            assert [m["id"] for m in members.list_members(conn)] == [PROVIDER]
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    finally:
        eng2.dispose()
