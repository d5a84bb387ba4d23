"""The registry as a running bus process sees it: an immutable in-memory snapshot.

A process loads a snapshot at start and reloads it whenever the registry's
version changes (checked every ``refresh_seconds``), so a revocation made by
any process or command takes effect everywhere within a few seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, select

from dargah.core.keys import PublicKey, jwk_to_public_key
from dargah.registry.audit import current_version
from dargah.store.tables import (
    grants,
    members,
    quotas,
    services,
    subsystem_certs,
    subsystem_keys,
    subsystems,
    topics,
)


@dataclass(frozen=True, slots=True)
class ClientEntry:
    id: str
    active: bool
    secret_hash: str | None


@dataclass(frozen=True, slots=True)
class KeyEntry:
    kid: str
    client: str
    alg: str
    public_key: PublicKey
    active: bool


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    id: str
    provider: str
    title: str
    scheme: str
    host: str
    port: int
    base_path: str
    personal_data: bool
    timeout_s: float
    max_body: int
    maintenance: bool
    store_bodies: bool
    active: bool


@dataclass(frozen=True, slots=True)
class CertEntry:
    """A client certificate registered on a subsystem (by its x5t#S256 thumbprint)."""

    thumbprint: str
    client: str
    pem: str | None
    active: bool


@dataclass(frozen=True, slots=True)
class Quota:
    per_second: float
    burst: float


@dataclass(frozen=True, slots=True)
class TopicEntry:
    id: str
    owner: str
    active: bool


@dataclass(frozen=True)
class Snapshot:
    version: int
    clients: dict[str, ClientEntry]
    keys: dict[str, KeyEntry]
    services: dict[str, ServiceEntry]
    grants: dict[tuple[str, str], frozenset[str]]
    quotas: dict[tuple[str, str | None], Quota]
    topics: dict[str, TopicEntry]
    certs: dict[str, CertEntry] = field(default_factory=dict)

    def service_ids_for(self, client: str) -> list[str]:
        return sorted(s for (c, s) in self.grants if c == client)


def _service_entry(row: dict[str, Any]) -> ServiceEntry:
    url = urlsplit(row["base_url"])
    port = url.port or (443 if url.scheme == "https" else 80)
    return ServiceEntry(
        id=row["id"],
        provider=row["subsystem_id"],
        title=row["title"],
        scheme=url.scheme,
        host=url.hostname or "",
        port=port,
        base_path=url.path.rstrip("/"),
        personal_data=bool(row["personal_data"]),
        timeout_s=float(row["timeout_s"]),
        max_body=int(row["max_body"]),
        maintenance=bool(row["maintenance"]),
        store_bodies=bool(row["store_bodies"]),
        active=row["status"] == "active",
    )


def load_snapshot(conn: Connection) -> Snapshot:
    version = current_version(conn)
    member_active = {
        r.id: r.status == "active" for r in conn.execute(select(members.c.id, members.c.status))
    }
    clients = {
        r.id: ClientEntry(
            r.id, r.status == "active" and member_active.get(r.member_id, False), r.secret_hash
        )
        for r in conn.execute(
            select(
                subsystems.c.id,
                subsystems.c.member_id,
                subsystems.c.status,
                subsystems.c.secret_hash,
            )
        )
    }
    keys: dict[str, KeyEntry] = {}
    for k in conn.execute(select(subsystem_keys)).mappings():
        try:
            public_key, alg = jwk_to_public_key(json.loads(k["jwk"]))
        except ValueError:
            continue
        keys[k["kid"]] = KeyEntry(
            k["kid"], k["subsystem_id"], alg, public_key, k["status"] == "active"
        )
    svc = {}
    for s in conn.execute(select(services)).mappings():
        entry = _service_entry(dict(s))
        provider = clients.get(entry.provider)
        if entry.active and (provider is None or not provider.active):
            # A revoked provider (subsystem or member) offers nothing.
            entry = replace(entry, active=False)
        svc[entry.id] = entry
    grant_map: dict[tuple[str, str], frozenset[str]] = {}
    for g in conn.execute(
        select(grants.c.client_id, grants.c.service_id, grants.c.purposes).where(
            grants.c.status == "approved"
        )
    ):
        grant_map[(g.client_id, g.service_id)] = frozenset(json.loads(g.purposes))
    quota_map = {
        (r.client_id, r.service_id or None): Quota(float(r.per_second), float(r.burst))
        for r in conn.execute(select(quotas))
    }
    topic_map = {
        t.id: TopicEntry(
            t.id,
            t.subsystem_id,
            t.status == "active"
            and bool(clients.get(t.subsystem_id) and clients[t.subsystem_id].active),
        )
        for t in conn.execute(select(topics.c.id, topics.c.subsystem_id, topics.c.status))
    }
    certs = {
        c.thumbprint: CertEntry(c.thumbprint, c.subsystem_id, c.pem, c.status == "active")
        for c in conn.execute(select(subsystem_certs))
    }
    return Snapshot(version, clients, keys, svc, grant_map, quota_map, topic_map, certs)
