"""Registering the sandbox agencies and a tester client on an instance, idempotently.

Run at every ``dargah demo`` start: what exists is kept (the data survives a
restart), what is missing is added, and provider URLs follow the sandbox's
current address. Sandbox credentials that the registry keeps only as hashes
(the admin token, client secrets) are kept in ``{home}/sandbox-secrets.json``
(mode 0600) so that ``demo.json`` can be written again after a restart.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select

from dargah.core.errors import NotFound
from dargah.core.keys import generate_ed25519, private_pem, public_jwk
from dargah.registry import grants, members, services
from dargah.registry.admin_tokens import create_token, revoke_token
from dargah.registry.instance import new_secret
from dargah.sandbox.agencies import AGENCIES
from dargah.sandbox.openapi import openapi_document

ACTOR = "sandbox:provision"
TESTER_LEGAL_ID = "14003000014"
TESTER_NAME = "مرکز آزمون اتصال به گذرگاه"
PORTAL_LEGAL_ID = "14003000029"
PORTAL_MEMBER_NAME = "مرکز ملی تبادل اطلاعات"
PORTAL_PURPOSES = ("service-application", "identity-verification")
DENIED_AGENCY = "tax"  # the tester has no grant on the tax agency's services: "denied" in demo.json


@dataclass
class SandboxClient:
    id: str
    client_secret: str
    private_key_file: Path


def _secrets_file(home: Path) -> Path:
    return home / "sandbox-secrets.json"


def _load_secrets(home: Path) -> dict[str, str]:
    path = _secrets_file(home)
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return {str(k): str(v) for k, v in data.items()}
    return {}


def _save_secrets(home: Path, secrets: dict[str, str]) -> None:
    path = _secrets_file(home)
    path.parent.mkdir(parents=True, exist_ok=True)  # with PostgreSQL, nothing else made it
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(secrets, f, indent=1)
    tmp.replace(path)


def _ensure_member(conn: Any, member_id: str, name: str, name_en: str | None) -> None:
    try:
        members.get_member(conn, member_id)
    except NotFound:
        members.add_member(conn, member_id, name, ACTOR, name_en)


def _ensure_subsystem(conn: Any, client_id: str, name: str | None = None) -> bool:
    try:
        members.get_subsystem(conn, client_id)
        return False
    except NotFound:
        members.add_subsystem(conn, client_id, ACTOR, name)
        return True


def admin_token(engine: Engine, home: Path, fresh_token: str | None) -> str:
    """The sandbox's admin API token: the new instance's, or the one kept from before."""
    secrets = _load_secrets(home)
    if fresh_token is not None:
        secrets["admin_token"] = fresh_token
    elif "admin_token" not in secrets:  # e.g. a new home on an existing database
        secrets["admin_token"] = new_secret()
        with engine.begin() as conn:
            try:
                revoke_token(conn, "sandbox", ACTOR)
            except NotFound:
                pass
            create_token(conn, "sandbox", ACTOR, token=secrets["admin_token"])
    _save_secrets(home, secrets)
    return secrets["admin_token"]


def provision_agencies(engine: Engine, instance: str, sandbox_url: str) -> None:
    """Members, subsystems and bus services of every sandbox agency; URLs follow ``sandbox_url``."""
    base = sandbox_url.rstrip("/")
    with engine.begin() as conn:
        for agency in AGENCIES:
            _ensure_member(conn, agency.member_id(instance), agency.name_fa, agency.name_en)
            _ensure_subsystem(conn, agency.subsystem_id(instance), agency.name_fa)
            url = f"{base}/{agency.subsystem_code}"
            for spec in agency.services:
                _ensure_service(
                    conn,
                    agency.service_id(instance, spec.code),
                    url,
                    title=spec.title_fa,
                    personal_data=spec.personal_data,
                    openapi=json.dumps(openapi_document(agency, spec), ensure_ascii=False),
                    supplies=list(spec.supplies),
                )


def _ensure_service(conn: Connection, sid: str, url: str, **fields: Any) -> None:
    """Register a sandbox service once; on later starts only follow its URL (the port may move)."""
    try:
        current = services.get_service(conn, sid)
    except NotFound:
        services.add_service(conn, sid, url, ACTOR, timeout_s=10, **fields)
        return
    if current["base_url"] != url:
        services.update_service(conn, sid, {"base_url": url}, ACTOR)


BIRTH_TOPIC = ("sabt", "birth-registered.v1")
BIRTH_SUBSCRIBER = ("behzisti", "/events", "benefit-eligibility")


def provision_events(engine: Engine, home: Path, instance: str, sandbox_url: str) -> Path:
    """The agencies' topics, and the life event of the demo: civil registration publishes
    births, the welfare agency subscribes (a webhook) and opens the newborn package itself.

    Returns the private key file civil registration publishes with.
    """
    from dargah.registry import topics

    owner_code, topic_code = BIRTH_TOPIC
    sub_code, path, purpose = BIRTH_SUBSCRIBER
    by_code = {a.subsystem_code: a for a in AGENCIES}
    owner, subscriber = by_code[owner_code], by_code[sub_code]
    topic_id = f"{owner.subsystem_id(instance)}/{topic_code}"
    webhook = f"{sandbox_url.rstrip('/')}/{sub_code}{path}"
    key_file = home / "keys" / f"{owner_code}.pem"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    with engine.begin() as conn:
        for agency in AGENCIES:
            for spec in agency.topics:
                tid = f"{agency.subsystem_id(instance)}/{spec.code}"
                try:
                    topics.get_topic(conn, tid)
                except NotFound:
                    topics.add_topic(conn, tid, ACTOR, spec.title_fa)
        if not key_file.exists():
            key = generate_ed25519()
            members.add_key(conn, owner.subsystem_id(instance), public_jwk(key), ACTOR)
            key_file.write_bytes(private_pem(key))
            key_file.chmod(0o600)
        client = subscriber.subsystem_id(instance)
        live = grants.list_grants(conn, client_id=client, service_id=topic_id, status="approved")
        if not live:
            grants.request_grant(conn, client, topic_id, [purpose], ACTOR, approve=True)
        current = [
            s for s in topics.list_subscriptions(conn, client, topic_id) if s["status"] == "active"
        ]
        for sub in current:
            if sub["webhook_url"] != webhook:  # the sandbox moved to another port
                topics.remove_subscription(conn, sub["id"], ACTOR)
        if not any(s["webhook_url"] == webhook for s in current):
            topics.add_subscription(conn, client, topic_id, ACTOR, webhook=webhook)
    return key_file.resolve()


def provision_client(
    engine: Engine,
    home: Path,
    instance: str,
    code: str,
    *,
    legal_id: str,
    member_name: str,
    grants_for: list[tuple[str, list[str]]],
) -> SandboxClient:
    """A client subsystem with a key file and a secret, granted ``grants_for`` (service, purposes)."""
    member_id = f"{instance}/GOV/{legal_id}"
    client_id = f"{member_id}/{code}"
    keys_dir = home / "keys"
    keys_dir.mkdir(parents=True, exist_ok=True)
    key_file = keys_dir / f"{code}.pem"
    secrets = _load_secrets(home)
    with engine.begin() as conn:
        _ensure_member(conn, member_id, member_name, None)
        created = _ensure_subsystem(conn, client_id)
        if created or not key_file.exists():
            key = generate_ed25519()
            members.add_key(conn, client_id, public_jwk(key), ACTOR)
            key_file.write_bytes(private_pem(key))
            key_file.chmod(0o600)
        if created or f"secret:{client_id}" not in secrets:
            secrets[f"secret:{client_id}"] = members.new_client_secret(conn, client_id, ACTOR)
        live = {
            (g["service_id"])
            for g in grants.list_grants(conn, client_id=client_id, status="approved")
        }
        for service_id, purposes in grants_for:
            if service_id not in live:
                grants.request_grant(conn, client_id, service_id, purposes, ACTOR, approve=True)
    _save_secrets(home, secrets)
    return SandboxClient(client_id, secrets[f"secret:{client_id}"], key_file.resolve())


def tester_grants(instance: str) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """(granted services with purposes, denied services) for the tester client."""
    allowed, denied = [], []
    for agency in AGENCIES:
        for spec in agency.services:
            sid = agency.service_id(instance, spec.code)
            if agency.subsystem_code == DENIED_AGENCY:
                denied.append(sid)
            else:
                allowed.append((sid, list(spec.purposes)))
    return allowed, denied


def provision_desks(engine: Engine, instance: str, sandbox_url: str) -> None:
    """The application desk of every catalogue agency that receives applications online.

    Runs after the catalogue is imported (which registered the agencies as members).
    """
    from dargah.sandbox.desks import desk_service_id, desks
    from dargah.sandbox.providers.desk import SUBSYSTEM, openapi

    base = sandbox_url.rstrip("/")
    with engine.begin() as conn:
        for legal_id, (name, _services) in desks().items():
            member_id = f"{instance}/GOV/{legal_id}"
            _ensure_member(conn, member_id, name, None)
            _ensure_subsystem(conn, f"{member_id}/{SUBSYSTEM}", f"میز درخواست‌های {name}")
            _ensure_service(
                conn,
                desk_service_id(instance, legal_id),
                f"{base}/desk/{legal_id}",
                title=f"ثبت و پیگیری درخواست‌های {name}",
                openapi=json.dumps(openapi(legal_id, name), ensure_ascii=False),
                personal_data=True,
                supplies=[],
            )


def portal_grants(instance: str) -> list[tuple[str, list[str]]]:
    """What the portal may call: every sandbox service and application desk, for applications
    and sign-in only."""
    from dargah.sandbox.desks import desk_service_id, desks

    found = [(desk_service_id(instance, legal_id), ["service-application"]) for legal_id in desks()]
    for agency in AGENCIES:
        for spec in agency.services:
            purposes = [p for p in PORTAL_PURPOSES if p in spec.purposes]
            if purposes:
                found.append((agency.service_id(instance, spec.code), purposes))
    return found


def provision_catalogue(engine: Engine, home: Path, instance: str) -> int:
    """The sandbox's Persian catalogue of public services, imported once; returns how many."""
    from sqlalchemy import func, select

    from dargah.registry.catalogue.importer import import_catalogue
    from dargah.sandbox.catalogue_seed import load_seed_catalogue
    from dargah.store.tables import public_services

    with engine.connect() as conn:
        if conn.execute(select(func.count()).select_from(public_services)).scalar_one():
            return 0
    seed = home / "catalogue-seed.json"
    seed.write_text(json.dumps(load_seed_catalogue(), ensure_ascii=False), encoding="utf-8")
    report = import_catalogue(engine, [seed], actor=ACTOR, instance=instance)
    return len(load_seed_catalogue()["services"]) if report is not None else 0


@dataclass(frozen=True)
class SandboxTls:
    """The sandbox's HTTPS address: its server certificate, and a client certificate of the
    tester registered for mutual TLS (all made once, kept in HOME/tls)."""

    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def provision_tls(engine: Engine, home: Path, hosts: list[str], client_id: str) -> SandboxTls:
    from dargah.core.certs import pem_thumbprint, self_signed
    from dargah.core.keys import generate_p256
    from dargah.registry import certs
    from dargah.store.tables import subsystem_certs

    tls_dir = home / "tls"
    tls_dir.mkdir(parents=True, exist_ok=True)
    out = SandboxTls(
        tls_dir / "server.crt",
        tls_dir / "server.key",
        tls_dir / "tester.crt",
        tls_dir / "tester.key",
    )
    for cert_file, key_file, name, names in (
        (out.server_cert, out.server_key, "Dargah sandbox", hosts),
        (out.client_cert, out.client_key, client_id, []),
    ):
        if not (cert_file.exists() and key_file.exists()):
            key = generate_p256()
            key_file.write_bytes(private_pem(key))
            key_file.chmod(0o600)
            cert_file.write_bytes(self_signed(name, key, hosts=names, days=3650))
    thumb, pem = pem_thumbprint(out.client_cert.read_bytes())
    with engine.begin() as conn:
        known = conn.execute(
            select(subsystem_certs.c.thumbprint).where(subsystem_certs.c.thumbprint == thumb)
        ).first()
        if known is None:
            certs.add_certificate(conn, client_id, ACTOR, pem=pem)
    return out
