"""Subsystems' client certificates for mutual TLS (certificate-bound tokens, RFC 8705)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path

from dargah.console.api_deps import (
    SUBSYSTEM_PATH,
    ClientId,
    EngineDep,
    Operator,
    problems,
    reading,
    writing,
)
from dargah.console.schemas import Certificate, CertificateIn
from dargah.registry import certs, members

router = APIRouter()
Thumbprint = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9_-]{43}$", description="A certificate's x5t#S256.")
]
CertBody = Annotated[CertificateIn, Body(description="The certificate, or its thumbprint.")]


@router.get(
    SUBSYSTEM_PATH + "/certificates",
    tags=["keys"],
    name="list_certificates",
    responses=problems({404: "No such subsystem."}),
)
def list_certificates(client: ClientId, engine: EngineDep, _caller: Operator) -> list[Certificate]:
    """The subsystem's client certificates, revoked ones included, oldest first."""
    with reading(engine) as conn:
        members.get_subsystem(conn, client)
        return [Certificate(**c) for c in certs.list_certificates(conn, client)]


@router.post(
    SUBSYSTEM_PATH + "/certificates",
    status_code=201,
    tags=["keys"],
    name="add_certificate",
    responses=problems(
        {
            404: "No such subsystem.",
            409: "The certificate is registered already, or the subsystem is inactive.",
        }
    ),
)
def add_certificate(
    client: ClientId, cert: CertBody, engine: EngineDep, caller: Operator
) -> Certificate:
    """Register a client certificate: over mutual TLS the subsystem then gets tokens with it
    alone (``client_id`` in the token request), bound to it (``cnf.x5t#S256``)."""
    with writing(engine) as conn:
        row = certs.add_certificate(
            conn, client, caller.actor, pem=cert.pem, thumbprint=cert.thumbprint
        )
        return Certificate(**row)


@router.post(
    SUBSYSTEM_PATH + "/certificates/{thumbprint}/revoke",
    tags=["keys"],
    name="revoke_certificate",
    responses=problems({404: "The subsystem has no such certificate."}),
)
def revoke_certificate(
    client: ClientId, thumbprint: Thumbprint, engine: EngineDep, caller: Operator
) -> Certificate:
    """Revoke a certificate: tokens bound to it stop working within seconds."""
    with writing(engine) as conn:
        return Certificate(**certs.revoke_certificate(conn, client, thumbprint, caller.actor))
