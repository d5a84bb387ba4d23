"""``dargah cert``: subsystems' client certificates for mutual TLS (certificate-bound tokens)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from dargah.cli.context import home_option, load_instance, reports_errors
from dargah.registry import certs


def _print(row: dict[str, Any]) -> None:
    click.echo(json.dumps({k: v for k, v in row.items() if k != "pem"}, ensure_ascii=False))


@click.group()
def cert() -> None:
    """Subsystems' client certificates (mutual TLS, RFC 8705)."""


@cert.command("add")
@click.argument("client_id")
@click.argument("cert_file", type=click.Path(exists=True, path_type=Path), required=False)
@click.option("--thumbprint", default=None, help="Register only this x5t#S256 (CA-issued).")
@home_option
@reports_errors
def cert_add(
    client_id: str, cert_file: Path | None, thumbprint: str | None, home: Path | None
) -> None:
    """Register a PEM certificate (CERT_FILE) or only its thumbprint on CLIENT_ID."""
    if (cert_file is None) == (thumbprint is None):
        raise click.UsageError("give either CERT_FILE or --thumbprint")
    pem = cert_file.read_text() if cert_file is not None else None
    inst = load_instance(home)
    with inst.engine.begin() as conn:
        _print(certs.add_certificate(conn, client_id, inst.actor, pem=pem, thumbprint=thumbprint))


@cert.command("new")
@click.argument("client_id")
@click.option("--cert-out", type=click.Path(path_type=Path), required=True)
@click.option("--key-out", type=click.Path(path_type=Path), required=True)
@home_option
@reports_errors
def cert_new(client_id: str, cert_out: Path, key_out: Path, home: Path | None) -> None:
    """Make a P-256 key and a self-signed certificate for CLIENT_ID, register the certificate,
    and write both (the key as unencrypted PKCS#8 PEM, mode 0600)."""
    from dargah.core.certs import self_signed
    from dargah.core.keys import generate_p256, private_pem

    key = generate_p256()
    pem = self_signed(client_id, key)
    inst = load_instance(home)
    with inst.engine.begin() as conn:
        row = certs.add_certificate(conn, client_id, inst.actor, pem=pem.decode())
    key_out.touch(mode=0o600)
    key_out.write_bytes(private_pem(key))
    cert_out.write_bytes(pem)
    _print(row)


@cert.command("list")
@click.argument("client_id")
@home_option
@reports_errors
def cert_list(client_id: str, home: Path | None) -> None:
    """The subsystem's certificates, one JSON object a line."""
    inst = load_instance(home)
    with inst.engine.connect() as conn:
        for row in certs.list_certificates(conn, client_id):
            _print(row)


@cert.command("revoke")
@click.argument("client_id")
@click.argument("thumbprint")
@home_option
@reports_errors
def cert_revoke(client_id: str, thumbprint: str, home: Path | None) -> None:
    """Revoke a certificate: tokens bound to it stop working within seconds."""
    inst = load_instance(home)
    with inst.engine.begin() as conn:
        _print(certs.revoke_certificate(conn, client_id, thumbprint, inst.actor))


commands: list[click.Command] = [cert]
