"""Grants: deny by default; a consumer asks, the provider agency decides, the operator can revoke."""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import Connection, insert, select, update

from dargah.core.clock import now_rfc3339
from dargah.core.errors import BadRequest, Conflict, NotFound
from dargah.core.identifiers import parse_service_id, parse_subsystem_id
from dargah.registry import audit
from dargah.registry.audit import Action
from dargah.registry.members import get_subsystem
from dargah.registry.services import get_service
from dargah.store.tables import grants, subsystems, topics

PURPOSE_RE = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
LIVE = ("requested", "approved")


def _purposes(purposes: list[str]) -> list[str]:
    if not purposes:
        raise BadRequest("a grant needs at least one purpose", "مجوز دست‌کم به یک هدف نیاز دارد")
    for p in purposes:
        if not PURPOSE_RE.fullmatch(p):
            raise BadRequest(
                f"purpose {p!r} must be lowercase letters, digits, '.', '_' or '-' (at most 64)",
                f"هدف {p} نامعتبر است",
            )
    return sorted(set(purposes))


def _out(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["purposes"] = (
        json.loads(row["purposes"]) if isinstance(row["purposes"], str) else row["purposes"]
    )
    return out


def _target(client_id: str, service_id: str) -> str:
    return f"{client_id} -> {service_id}"


def _live_grant(conn: Connection, client_id: str, service_id: str) -> dict[str, Any] | None:
    row = (
        conn.execute(
            select(grants).where(
                grants.c.client_id == client_id,
                grants.c.service_id == service_id,
                grants.c.status.in_(LIVE),
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def _require_target(conn: Connection, target: str) -> None:
    """A grant is on an active bus service or topic."""
    status = conn.execute(select(topics.c.status).where(topics.c.id == target)).scalar()
    if status is None:
        status = get_service(conn, target)["status"]
    if status != "active":
        raise Conflict(f"{target} is {status}; it cannot be granted", "این خدمت فعال نیست")


def request_grant(
    conn: Connection,
    client_id: str,
    service_id: str,
    purposes: list[str],
    actor: str,
    *,
    approve: bool = False,
) -> dict[str, Any]:
    """A consumer's request; with ``approve`` (the operator's ``grant add``) it is approved at once."""
    parse_subsystem_id(client_id)
    parse_service_id(service_id)
    if get_subsystem(conn, client_id)["status"] != "active":
        raise Conflict(f"subsystem {client_id} is not active", "سامانه درخواست‌کننده فعال نیست")
    _require_target(conn, service_id)
    clean = _purposes(purposes)
    # Serialise requests for one client (PostgreSQL row lock; SQLite writers are serial anyway),
    # so that concurrent identical requests cannot both create a live grant.
    conn.execute(select(subsystems.c.id).where(subsystems.c.id == client_id).with_for_update())
    existing = _live_grant(conn, client_id, service_id)
    now = now_rfc3339()
    if existing is not None:
        if not approve:
            raise Conflict(
                f"a grant for {_target(client_id, service_id)} is already {existing['status']}",
                "برای این سامانه و خدمت مجوز یا درخواستی وجود دارد",
            )
        values = {
            "purposes": json.dumps(clean),
            "status": "approved",
            "decided_by": actor,
            "decided_at": now,
        }
        conn.execute(update(grants).where(grants.c.id == existing["id"]).values(**values))
        after = {**existing, **values}
        audit.record(
            conn,
            actor,
            Action.GRANT_APPROVE,
            _target(client_id, service_id),
            _out(existing),
            _out(after),
        )
        return _out(after)
    row = {
        "client_id": client_id,
        "service_id": service_id,
        "purposes": json.dumps(clean),
        "status": "approved" if approve else "requested",
        "requested_by": actor,
        "decided_by": actor if approve else None,
        "reason": None,
        "created_at": now,
        "decided_at": now if approve else None,
    }
    row["id"] = conn.execute(insert(grants).values(**row)).inserted_primary_key[0]
    audit.record(
        conn,
        actor,
        Action.GRANT_APPROVE if approve else Action.GRANT_REQUEST,
        _target(client_id, service_id),
        None,
        _out(row),
    )
    return _out(row)


def _get_row(conn: Connection, grant_id: int) -> dict[str, Any]:
    row = conn.execute(select(grants).where(grants.c.id == grant_id)).mappings().first()
    if row is None:
        raise NotFound(f"no grant {grant_id}", "مجوز یافت نشد")
    return dict(row)


def get_grant(conn: Connection, grant_id: int) -> dict[str, Any]:
    return _out(_get_row(conn, grant_id))


def list_grants(
    conn: Connection,
    client_id: str | None = None,
    service_id: str | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    q = select(grants).order_by(grants.c.id)
    if client_id:
        q = q.where(grants.c.client_id == client_id)
    if service_id:
        q = q.where(grants.c.service_id == service_id)
    if status:
        q = q.where(grants.c.status == status)
    return [_out(dict(r)) for r in conn.execute(q).mappings()]


_TRANSITIONS = {
    "approve": ({"requested"}, "approved", Action.GRANT_APPROVE),
    "reject": ({"requested"}, "rejected", Action.GRANT_REJECT),
    "revoke": ({"requested", "approved"}, "revoked", Action.GRANT_REVOKE),
}


def decide(
    conn: Connection, grant_id: int, decision: str, actor: str, reason: str | None = None
) -> dict[str, Any]:
    if decision not in _TRANSITIONS:
        raise BadRequest(f"decision must be one of {', '.join(_TRANSITIONS)}", "تصمیم نامعتبر است")
    allowed_from, to, action = _TRANSITIONS[decision]
    before = _get_row(conn, grant_id)
    if before["status"] not in allowed_from:
        raise Conflict(
            f"grant {grant_id} is {before['status']}; it cannot be {to}",
            "وضعیت مجوز اجازه این تغییر را نمی‌دهد",
        )
    values = {"status": to, "decided_by": actor, "decided_at": now_rfc3339(), "reason": reason}
    conn.execute(update(grants).where(grants.c.id == grant_id).values(**values))
    after = {**before, **values}
    audit.record(
        conn,
        actor,
        action,
        _target(before["client_id"], before["service_id"]),
        _out(before),
        _out(after),
    )
    return _out(after)


def revoke_grant(conn: Connection, client_id: str, service_id: str, actor: str) -> dict[str, Any]:
    live = _live_grant(conn, client_id, service_id)
    if live is None:
        raise NotFound(f"no live grant for {_target(client_id, service_id)}", "مجوز فعالی یافت نشد")
    return decide(conn, int(live["id"]), "revoke", actor)
