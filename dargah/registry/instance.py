"""An instance's identity: its code, its first admin token and the bus's own keys.

Keys live in the database so that every bus process of an instance, on any
machine, signs and verifies with the same ones. Protect the database (and its
backups) like the keys it holds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from dargah.core.clock import now_rfc3339
from dargah.core.identifiers import INSTANCE_RE
from dargah.core.keys import generate_ed25519, private_pem, public_jwk
from dargah.registry import audit
from dargah.store.db import is_initialised, upgrade
from dargah.store.tables import admin_tokens, bus_keys, instance_meta, registry_version

SANDBOX_INSTANCES = frozenset({"DEV", "TEST"})

# Uses of the bus's keys: Ed25519 pairs and 32-byte symmetric secrets.
SIGNING_USES = ("assertion", "seal")
SECRET_USES = ("token", "subject", "body")


def hash_secret(secret: str) -> str:
    """Secrets we issue are 256-bit random values, so one SHA-256 is enough."""
    return "sha256$" + hashlib.sha256(secret.encode()).hexdigest()


def check_secret(secret: str, stored: str | None) -> bool:
    return stored is not None and hmac.compare_digest(hash_secret(secret), stored)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class InstanceInfo:
    code: str
    created_at: str

    @property
    def sandbox(self) -> bool:
        return self.code in SANDBOX_INSTANCES


def _meta(conn: Connection, key: str) -> str | None:
    return conn.execute(select(instance_meta.c.value).where(instance_meta.c.key == key)).scalar()


def ensure_instance(engine: Engine, code: str) -> tuple[InstanceInfo, str | None]:
    """Migrate the schema and create the instance if it is new.

    Returns the instance and, only when it was just created, its first admin API token,
    named ``operator`` (shown once; only its hash is kept; see :mod:`dargah.registry.admin_tokens`).
    """
    if not INSTANCE_RE.fullmatch(code):
        raise ValueError(f"instance code {code!r} must be 2-8 capital letters")
    fresh = not is_initialised(engine)
    upgrade(engine)
    with engine.begin() as conn:
        existing = _meta(conn, "instance")
        if existing is not None:
            return InstanceInfo(existing, _meta(conn, "created_at") or ""), None
        token = new_secret()
        now = now_rfc3339()
        conn.execute(
            insert(instance_meta),
            [
                {"key": "instance", "value": code},
                {"key": "created_at", "value": now},
            ],
        )
        conn.execute(
            insert(admin_tokens).values(
                name="operator", token_hash=hash_secret(token), created_at=now, created_by="system"
            )
        )
        conn.execute(insert(registry_version).values(id=1, version=1))
        for use in SIGNING_USES:
            key = generate_ed25519()
            jwk = public_jwk(key)
            conn.execute(
                insert(bus_keys).values(
                    kid=f"{use}-{jwk['kid'][:16]}",
                    use=use,
                    alg="EdDSA",
                    private_pem=private_pem(key).decode(),
                    public_jwk=json.dumps(jwk),
                    status="active",
                    created_at=now,
                )
            )
        for use in SECRET_USES:
            conn.execute(
                insert(bus_keys).values(
                    kid=f"{use}-{secrets.token_hex(8)}",
                    use=use,
                    alg="HS256" if use != "body" else "A256GCM",
                    private_pem=secrets.token_hex(32),
                    public_jwk=None,
                    status="active",
                    created_at=now,
                )
            )
        audit.record(conn, "system", audit.Action.INSTANCE_INIT, code, None, {"fresh": fresh})
        return InstanceInfo(code, now), token


def instance_info(conn: Connection) -> InstanceInfo:
    code = _meta(conn, "instance")
    if code is None:
        raise RuntimeError("this database holds no Dargah instance yet")
    return InstanceInfo(code, _meta(conn, "created_at") or "")


@dataclass(frozen=True)
class BusKey:
    kid: str
    use: str
    alg: str
    private: str
    public_jwk: dict[str, str] | None


def active_keys(conn: Connection) -> dict[str, BusKey]:
    """The active key of each use, by use."""
    out: dict[str, BusKey] = {}
    for row in conn.execute(
        select(bus_keys).where(bus_keys.c.status == "active").order_by(bus_keys.c.created_at)
    ).mappings():
        out[row["use"]] = BusKey(
            row["kid"],
            row["use"],
            row["alg"],
            row["private_pem"],
            json.loads(row["public_jwk"]) if row["public_jwk"] else None,
        )
    return out


def subject_ref(conn: Connection, national_code: str) -> str:
    """The message log's ``subject_ref`` of a national code: HMAC-SHA256 under the active
    subject key (gsb-protocol.md §6), as the bus writes it."""
    key = bytes.fromhex(active_keys(conn)["subject"].private)
    return hmac.new(key, national_code.encode(), hashlib.sha256).hexdigest()


def all_public_jwks(conn: Connection) -> list[dict[str, str]]:
    """Every signing key ever used (retired ones too, so old seals still verify)."""
    jwks = []
    for row in conn.execute(select(bus_keys).where(bus_keys.c.public_jwk.is_not(None))).mappings():
        jwk = json.loads(row["public_jwk"])
        jwk["kid"] = row["kid"]
        jwks.append(jwk)
    return jwks


def open_instance(settings: Any) -> tuple[Engine, InstanceInfo, str | None]:
    """The instance's engine, creating and migrating the store when it is new.

    Returns (engine, instance, admin token if the instance was just created).
    """
    from dargah.store.db import make_engine

    engine = make_engine(settings)
    info, token = ensure_instance(engine, settings.instance)
    if getattr(settings, "redis_url", ""):
        from dargah.registry.changes import install_notifier

        install_notifier(engine, settings.redis_url, info.code)
    return engine, info, token
