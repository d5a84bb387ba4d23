"""Subsystems' client certificates for mutual TLS (RFC 8705 certificate-bound tokens).

An agency registers its system's certificate whole (a self-signed one: the bus then trusts it
for the TLS handshake) or only its ``x5t#S256`` thumbprint (a certificate issued by a CA the
bus trusts, ``DARGAH_TLS_CLIENT_CA_FILE``). A subsystem presenting a registered certificate
may get a token without any other credential, and the token is bound to that certificate.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, update

from dargah.core.certs import THUMBPRINT_RE, pem_thumbprint
from dargah.core.clock import now_rfc3339
from dargah.core.errors import BadRequest, Conflict, NotFound
from dargah.registry import audit
from dargah.registry.audit import Action
from dargah.registry.members import get_subsystem
from dargah.store.tables import subsystem_certs


def add_certificate(
    conn: Connection,
    client_id: str,
    actor: str,
    *,
    pem: str | None = None,
    thumbprint: str | None = None,
) -> dict[str, Any]:
    """Register a certificate (``pem``) or a certificate's thumbprint on a subsystem."""
    sub = get_subsystem(conn, client_id)
    if sub["status"] != "active":
        raise Conflict(f"subsystem {client_id} is {sub['status']}", "سامانه فعال نیست")
    if (pem is None) == (thumbprint is None):
        raise BadRequest(
            "send either the certificate (pem) or its x5t#S256 thumbprint",
            "گواهی یا اثر انگشت آن را بفرستید",
        )
    if pem is not None:
        if "PRIVATE KEY" in pem:
            raise BadRequest(
                "send the certificate only, never its private key", "فقط گواهی را بفرستید"
            )
        try:
            thumbprint, pem = pem_thumbprint(pem)
        except ValueError as exc:
            raise BadRequest(str(exc), "گواهی ارسالی معتبر نیست") from None
    elif not THUMBPRINT_RE.match(thumbprint or ""):
        raise BadRequest(
            "the thumbprint must be 43 base64url characters (SHA-256 of the certificate's DER)",
            "اثر انگشت گواهی نادرست است",
        )
    existing = conn.execute(
        select(subsystem_certs.c.thumbprint).where(subsystem_certs.c.thumbprint == thumbprint)
    ).first()
    if existing is not None:
        raise Conflict("this certificate is already registered", "این گواهی قبلاً ثبت شده است")
    row = {
        "thumbprint": thumbprint,
        "subsystem_id": client_id,
        "pem": pem,
        "status": "active",
        "created_at": now_rfc3339(),
        "revoked_at": None,
    }
    conn.execute(insert(subsystem_certs).values(**row))
    audit.record(conn, actor, Action.CERT_ADD, f"{client_id}#{thumbprint}", None, row)
    return row


def list_certificates(conn: Connection, client_id: str) -> list[dict[str, Any]]:
    q = select(subsystem_certs).where(subsystem_certs.c.subsystem_id == client_id)
    return [dict(r) for r in conn.execute(q.order_by(subsystem_certs.c.created_at)).mappings()]


def revoke_certificate(
    conn: Connection, client_id: str, thumbprint: str, actor: str
) -> dict[str, Any]:
    """Revoke a certificate: tokens bound to it stop working within seconds."""
    row = (
        conn.execute(select(subsystem_certs).where(subsystem_certs.c.thumbprint == thumbprint))
        .mappings()
        .first()
    )
    if row is None or row["subsystem_id"] != client_id:
        raise NotFound(
            f"{client_id} has no certificate {thumbprint}", "این سامانه چنین گواهی‌ای ندارد"
        )
    before = dict(row)
    after = {**before, "status": "revoked", "revoked_at": now_rfc3339()}
    conn.execute(
        update(subsystem_certs)
        .where(subsystem_certs.c.thumbprint == thumbprint)
        .values(status="revoked", revoked_at=after["revoked_at"])
    )
    audit.record(conn, actor, Action.CERT_REVOKE, f"{client_id}#{thumbprint}", before, after)
    return after
