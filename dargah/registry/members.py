"""Members, subsystems and their keys: who may hold credentials on the bus."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, insert, select, update

from dargah.core.clock import now_rfc3339
from dargah.core.errors import BadRequest, Conflict, NotFound
from dargah.core.identifiers import parse_member_id, parse_subsystem_id
from dargah.core.keys import jwk_thumbprint, jwk_to_public_key
from dargah.registry import audit
from dargah.registry.audit import Action
from dargah.registry.instance import hash_secret, instance_info, new_secret
from dargah.store.tables import members, subsystem_keys, subsystems


def _row(conn: Connection, table: Any, key: Any, value: str) -> dict[str, Any] | None:
    row = conn.execute(select(table).where(key == value)).mappings().first()
    return dict(row) if row else None


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "secret_hash"}


def _same_instance(conn: Connection, instance: str, raw: str) -> None:
    code = instance_info(conn).code
    if instance != code:
        raise BadRequest(
            f"{raw!r} belongs to instance {instance}, but this instance is {code}",
            f"شناسه {raw} متعلق به نمونه {instance} است، نه {code}",
        )


def add_member(
    conn: Connection, member_id: str, name: str, actor: str, name_en: str | None = None
) -> dict[str, Any]:
    mid = parse_member_id(member_id)
    _same_instance(conn, mid.instance, member_id)
    if not name.strip():
        raise BadRequest("a member needs a name", "نام دستگاه لازم است")
    if _row(conn, members, members.c.id, member_id):
        raise Conflict(f"member {member_id} already exists", f"دستگاه {member_id} قبلاً ثبت شده است")
    row = {
        "id": member_id,
        "member_class": mid.member_class,
        "legal_id": mid.legal_id,
        "name": name.strip(),
        "name_en": name_en,
        "status": "active",
        "created_at": now_rfc3339(),
    }
    conn.execute(insert(members).values(**row))
    audit.record(conn, actor, Action.MEMBER_ADD, member_id, None, row)
    return row


def get_member(conn: Connection, member_id: str) -> dict[str, Any]:
    row = _row(conn, members, members.c.id, member_id)
    if row is None:
        raise NotFound(f"no member {member_id}", f"دستگاه {member_id} یافت نشد")
    return row


def list_members(conn: Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(select(members).order_by(members.c.id)).mappings()]


def set_member_status(conn: Connection, member_id: str, status: str, actor: str) -> dict[str, Any]:
    if status not in ("active", "revoked"):
        raise BadRequest("a member's status is active or revoked", "وضعیت دستگاه نامعتبر است")
    before = get_member(conn, member_id)
    conn.execute(update(members).where(members.c.id == member_id).values(status=status))
    after = {**before, "status": status}
    audit.record(
        conn,
        actor,
        Action.MEMBER_REVOKE if status == "revoked" else Action.MEMBER_UPDATE,
        member_id,
        before,
        after,
    )
    return after


def add_subsystem(
    conn: Connection, client_id: str, actor: str, name: str | None = None
) -> dict[str, Any]:
    sid = parse_subsystem_id(client_id)
    member = get_member(conn, str(sid.member))
    if member["status"] != "active":
        raise Conflict(f"member {member['id']} is {member['status']}", "دستگاه فعال نیست")
    if _row(conn, subsystems, subsystems.c.id, client_id):
        raise Conflict(
            f"subsystem {client_id} already exists", f"سامانه {client_id} قبلاً ثبت شده است"
        )
    row = {
        "id": client_id,
        "member_id": str(sid.member),
        "name": name,
        "status": "active",
        "secret_hash": None,
        "created_at": now_rfc3339(),
    }
    conn.execute(insert(subsystems).values(**row))
    audit.record(conn, actor, Action.SUBSYSTEM_ADD, client_id, None, _public(row))
    return _public(row)


def get_subsystem(conn: Connection, client_id: str) -> dict[str, Any]:
    row = _row(conn, subsystems, subsystems.c.id, client_id)
    if row is None:
        raise NotFound(f"no subsystem {client_id}", f"سامانه {client_id} یافت نشد")
    return _public(row)


def list_subsystems(conn: Connection, member_id: str | None = None) -> list[dict[str, Any]]:
    q = select(subsystems).order_by(subsystems.c.id)
    if member_id:
        q = q.where(subsystems.c.member_id == member_id)
    return [_public(dict(r)) for r in conn.execute(q).mappings()]


def revoke_subsystem(conn: Connection, client_id: str, actor: str) -> dict[str, Any]:
    before = get_subsystem(conn, client_id)
    conn.execute(update(subsystems).where(subsystems.c.id == client_id).values(status="revoked"))
    after = {**before, "status": "revoked"}
    audit.record(conn, actor, Action.SUBSYSTEM_REVOKE, client_id, before, after)
    return after


def new_client_secret(conn: Connection, client_id: str, actor: str) -> str:
    """A new client secret (sandbox instances only); the previous one stops working."""
    if not instance_info(conn).sandbox:
        raise BadRequest(
            "client secrets are accepted on sandbox instances only (DEV, TEST); register a key",
            "رمز کلاینت فقط در نمونه‌های آزمایشی پذیرفته می‌شود؛ کلید ثبت کنید",
        )
    get_subsystem(conn, client_id)
    secret = new_secret()
    conn.execute(
        update(subsystems)
        .where(subsystems.c.id == client_id)
        .values(secret_hash=hash_secret(secret))
    )
    audit.record(
        conn, actor, Action.SUBSYSTEM_SECRET, client_id, None, {"secret": "(new, not kept)"}
    )
    return secret


def add_key(conn: Connection, client_id: str, jwk: dict[str, Any], actor: str) -> dict[str, Any]:
    sub = get_subsystem(conn, client_id)
    if sub["status"] != "active":
        raise Conflict(f"subsystem {client_id} is {sub['status']}", "سامانه فعال نیست")
    if not isinstance(jwk, dict) or "d" in jwk:
        raise BadRequest(
            "send the public JWK only, never the private key", "فقط کلید عمومی را بفرستید"
        )
    try:
        _, alg = jwk_to_public_key(jwk)
        kid = jwk_thumbprint({k: str(v) for k, v in jwk.items()})
    except ValueError as exc:
        raise BadRequest(str(exc), "کلید ارسالی معتبر نیست") from exc
    if _row(conn, subsystem_keys, subsystem_keys.c.kid, kid):
        raise Conflict(f"key {kid} is already registered", "این کلید قبلاً ثبت شده است")
    public = {k: jwk[k] for k in ("kty", "crv", "x", "y") if k in jwk}
    row = {
        "kid": kid,
        "subsystem_id": client_id,
        "alg": alg,
        "jwk": json.dumps(public),
        "status": "active",
        "created_at": now_rfc3339(),
        "revoked_at": None,
    }
    conn.execute(insert(subsystem_keys).values(**row))
    audit.record(conn, actor, Action.KEY_ADD, f"{client_id}#{kid}", None, row)
    return _key_out(row)


def _key_out(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["jwk"] = json.loads(row["jwk"]) if isinstance(row["jwk"], str) else row["jwk"]
    return out


def list_keys(conn: Connection, client_id: str) -> list[dict[str, Any]]:
    q = select(subsystem_keys).where(subsystem_keys.c.subsystem_id == client_id)
    return [
        _key_out(dict(r)) for r in conn.execute(q.order_by(subsystem_keys.c.created_at)).mappings()
    ]


def revoke_key(conn: Connection, client_id: str, kid: str, actor: str) -> dict[str, Any]:
    row = _row(conn, subsystem_keys, subsystem_keys.c.kid, kid)
    if row is None or row["subsystem_id"] != client_id:
        raise NotFound(f"subsystem {client_id} has no key {kid}", "کلید یافت نشد")
    now = now_rfc3339()
    conn.execute(
        update(subsystem_keys)
        .where(subsystem_keys.c.kid == kid)
        .values(status="revoked", revoked_at=now)
    )
    after = {**row, "status": "revoked", "revoked_at": now}
    audit.record(conn, actor, Action.KEY_REVOKE, f"{client_id}#{kid}", row, after)
    return _key_out(after)


def rotate_key(
    conn: Connection, client_id: str, old_kid: str, jwk: dict[str, Any], actor: str
) -> dict[str, Any]:
    """Register a new key and revoke the old one in one transaction."""
    new = add_key(conn, client_id, jwk, actor)
    revoke_key(conn, client_id, old_kid, actor)
    return new
