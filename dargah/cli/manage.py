"""Management verbs: members, subsystems, keys, services, grants, quotas."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from dargah.cli.context import home_option, load_instance, reports_errors
from dargah.core.keys import generate_ed25519, private_pem, public_jwk
from dargah.registry import grants, members, objectives, quotas, services


def _print(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


@click.group()
def member() -> None:
    """Members: agencies and other bodies, by national legal ID."""


@member.command("add")
@click.argument("legal_id")
@click.option(
    "--class",
    "member_class",
    default="GOV",
    show_default=True,
    type=click.Choice(["GOV", "PUB", "COM", "NGO"]),
)
@click.option("--name", required=True, help="The member's name (Persian).")
@click.option("--name-en", default=None, help="The member's English name.")
@home_option
@reports_errors
def member_add(
    legal_id: str, member_class: str, name: str, name_en: str | None, home: Path | None
) -> None:
    """Register a member; LEGAL_ID is the 11-digit national legal ID or a full member id."""
    inst = load_instance(home)
    member_id = legal_id if "/" in legal_id else f"{inst.info.code}/{member_class}/{legal_id}"
    with inst.engine.begin() as conn:
        _print(members.add_member(conn, member_id, name, inst.actor, name_en))


@member.command("list")
@home_option
@reports_errors
def member_list(home: Path | None) -> None:
    """List members."""
    inst = load_instance(home)
    with inst.engine.connect() as conn:
        _print(members.list_members(conn))


@member.command("revoke")
@click.argument("member_id")
@home_option
@reports_errors
def member_revoke(member_id: str, home: Path | None) -> None:
    """Revoke a member: none of its subsystems can authenticate any more."""
    inst = load_instance(home)
    with inst.engine.begin() as conn:
        _print(members.set_member_status(conn, member_id, "revoked", inst.actor))


@click.group()
def subsystem() -> None:
    """Subsystems: the information systems that hold credentials."""


@subsystem.command("add")
@click.argument("client_id")
@click.option(
    "--key-out",
    type=click.Path(path_type=Path),
    default=None,
    help="Make an Ed25519 key pair, register it, write the private key here (PKCS#8 PEM).",
)
@click.option("--secret", is_flag=True, help="Print a new client secret (sandbox instances only).")
@click.option("--name", default=None)
@home_option
@reports_errors
def subsystem_add(
    client_id: str, key_out: Path | None, secret: bool, name: str | None, home: Path | None
) -> None:
    """Register a subsystem (CLIENT_ID = INSTANCE/CLASS/LEGAL_ID/CODE)."""
    inst = load_instance(home)
    with inst.engine.begin() as conn:
        out: dict[str, Any] = members.add_subsystem(conn, client_id, inst.actor, name)
        if key_out is not None:
            key = generate_ed25519()
            out["key"] = members.add_key(conn, client_id, public_jwk(key), inst.actor)["kid"]
            key_out.parent.mkdir(parents=True, exist_ok=True)
            key_out.write_bytes(private_pem(key))
            key_out.chmod(0o600)
            out["private_key_file"] = str(key_out.resolve())
        if secret:
            out["client_secret"] = members.new_client_secret(conn, client_id, inst.actor)
    _print(out)


@subsystem.command("revoke")
@click.argument("client_id")
@home_option
@reports_errors
def subsystem_revoke(client_id: str, home: Path | None) -> None:
    """Revoke a subsystem: its tokens stop working within seconds."""
    inst = load_instance(home)
    with inst.engine.begin() as conn:
        _print(members.revoke_subsystem(conn, client_id, inst.actor))


@subsystem.command("list")
@home_option
@reports_errors
def subsystem_list(home: Path | None) -> None:
    """List subsystems."""
    inst = load_instance(home)
    with inst.engine.connect() as conn:
        _print(members.list_subsystems(conn))


@click.group()
def key() -> None:
    """Keys of subsystems (JWK): add, rotate, revoke."""


def _read_jwk(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    if b"PRIVATE KEY" in data:
        from dargah.core.keys import load_private_pem

        return public_jwk(load_private_pem(data))
    if b"PUBLIC KEY" in data:
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        return public_jwk(load_pem_public_key(data))  # type: ignore[arg-type]
    jwk = json.loads(data)
    if not isinstance(jwk, dict):
        raise ValueError("the key file must hold a JWK object or a PEM key")
    return jwk


@key.command("add")
@click.argument("client_id")
@click.argument("key_file", type=click.Path(exists=True, path_type=Path))
@home_option
@reports_errors
def key_add(client_id: str, key_file: Path, home: Path | None) -> None:
    """Register a public key (a JWK file, or a PEM public or private key: only the public part is kept)."""
    inst = load_instance(home)
    with inst.engine.begin() as conn:
        _print(members.add_key(conn, client_id, _read_jwk(key_file), inst.actor))


@key.command("rotate")
@click.argument("client_id")
@click.argument("old_kid")
@click.argument("key_file", type=click.Path(exists=True, path_type=Path))
@home_option
@reports_errors
def key_rotate(client_id: str, old_kid: str, key_file: Path, home: Path | None) -> None:
    """Register a new key and revoke OLD_KID in one step."""
    inst = load_instance(home)
    with inst.engine.begin() as conn:
        _print(members.rotate_key(conn, client_id, old_kid, _read_jwk(key_file), inst.actor))


@key.command("revoke")
@click.argument("client_id")
@click.argument("kid")
@home_option
@reports_errors
def key_revoke(client_id: str, kid: str, home: Path | None) -> None:
    """Revoke a key: tokens obtained with it stop working within seconds."""
    inst = load_instance(home)
    with inst.engine.begin() as conn:
        _print(members.revoke_key(conn, client_id, kid, inst.actor))


@click.group()
def service() -> None:
    """Bus services offered by provider subsystems."""


@service.command("add")
@click.argument("service_id")
@click.option("--url", "base_url", required=True, help="The provider's base URL.")
@click.option("--title", default=None)
@click.option("--personal-data", is_flag=True, help="The service handles personal data.")
@click.option(
    "--timeout", "timeout_s", type=float, default=services.DEFAULT_TIMEOUT_S, show_default=True
)
@click.option(
    "--max-body",
    type=int,
    default=services.DEFAULT_MAX_BODY,
    show_default=True,
    help="Size limit in bytes, both directions.",
)
@click.option("--openapi", type=click.Path(exists=True, path_type=Path), default=None)
@click.option(
    "--supplies", multiple=True, help="A data item this service is the authentic source of."
)
@click.option("--store-bodies", is_flag=True, help="Keep request and response bodies, encrypted.")
@home_option
@reports_errors
def service_add(
    service_id: str,
    base_url: str,
    title: str | None,
    personal_data: bool,
    timeout_s: float,
    max_body: int,
    openapi: Path | None,
    supplies: tuple[str, ...],
    store_bodies: bool,
    home: Path | None,
) -> None:
    """Register a bus service."""
    inst = load_instance(home)
    with inst.engine.begin() as conn:
        _print(
            services.add_service(
                conn,
                service_id,
                base_url,
                inst.actor,
                title=title,
                personal_data=personal_data,
                timeout_s=timeout_s,
                max_body=max_body,
                openapi=openapi.read_text(encoding="utf-8") if openapi else None,
                supplies=list(supplies),
                store_bodies=store_bodies,
                settings=inst.settings,
            )
        )


@service.command("maintenance")
@click.argument("service_id")
@click.argument("state", type=click.Choice(["on", "off"]))
@home_option
@reports_errors
def service_maintenance(service_id: str, state: str, home: Path | None) -> None:
    """Put a service in maintenance (calls answer service-disabled) or take it out."""
    inst = load_instance(home)
    with inst.engine.begin() as conn:
        _print(
            services.update_service(conn, service_id, {"maintenance": state == "on"}, inst.actor)
        )


@service.command("list")
@home_option
@reports_errors
def service_list(home: Path | None) -> None:
    """List bus services."""
    inst = load_instance(home)
    with inst.engine.connect() as conn:
        _print(services.list_services(conn))


@service.command("slo")
@click.argument("service_id")
@click.option("--availability", type=float, help="Percent of forwarded calls that must not fail.")
@click.option("--latency-ms", type=float, help="Latency objective in milliseconds.")
@click.option(
    "--latency-percent", type=float, help="Percent of forwarded calls within --latency-ms."
)
@click.option("--clear", is_flag=True, help="Drop the service's own objectives (defaults hold).")
@home_option
@reports_errors
def service_slo(
    service_id: str,
    availability: float | None,
    latency_ms: float | None,
    latency_percent: float | None,
    clear: bool,
    home: Path | None,
) -> None:
    """Show or set a service's objectives, with its error budget left and burn rates.

    Options not given keep their current value (or the default). Without options, only shows.
    """
    from dargah.bus import slo

    inst = load_instance(home)
    defaults = slo.default_objective(inst.settings)
    with inst.engine.begin() as conn:
        services.get_service(conn, service_id)  # not-found for an unknown service
        if clear:
            objectives.clear_objective(conn, service_id, inst.actor)
        elif any(v is not None for v in (availability, latency_ms, latency_percent)):
            current = objectives.get_objective(conn, service_id)
            base = current or {
                "availability": defaults.availability,
                "latency_ms": defaults.latency_ms,
                "latency_percent": defaults.latency_percent,
            }
            objectives.set_objective(
                conn,
                service_id,
                base["availability"] if availability is None else availability,
                base["latency_ms"] if latency_ms is None else latency_ms,
                base["latency_percent"] if latency_percent is None else latency_percent,
                inst.actor,
            )
    with inst.engine.begin() as conn:
        slo.roll_up(conn, defaults)
    with inst.engine.connect() as conn:
        _print(slo.reports(conn, [service_id], defaults, time.time())[service_id])


@click.group()
def grant() -> None:
    """Grants: which client may call which service, for which purposes."""


@grant.command("add")
@click.argument("client_id")
@click.argument("service_id")
@click.option("--purpose", "purposes", multiple=True, required=True)
@home_option
@reports_errors
def grant_add(
    client_id: str, service_id: str, purposes: tuple[str, ...], home: Path | None
) -> None:
    """Grant a client access to a service (by the operator: approved at once)."""
    inst = load_instance(home)
    with inst.engine.begin() as conn:
        _print(
            grants.request_grant(
                conn, client_id, service_id, list(purposes), inst.actor, approve=True
            )
        )


@grant.command("revoke")
@click.argument("client_id")
@click.argument("service_id")
@home_option
@reports_errors
def grant_revoke(client_id: str, service_id: str, home: Path | None) -> None:
    """Revoke a client's grant on a service."""
    inst = load_instance(home)
    with inst.engine.begin() as conn:
        _print(grants.revoke_grant(conn, client_id, service_id, inst.actor))


@grant.command("list")
@click.option("--client", default=None)
@click.option("--service", "service_id", default=None)
@home_option
@reports_errors
def grant_list(client: str | None, service_id: str | None, home: Path | None) -> None:
    """List grants and requests."""
    inst = load_instance(home)
    with inst.engine.connect() as conn:
        _print(grants.list_grants(conn, client, service_id))


@click.group()
def quota() -> None:
    """Rate limits per client (token bucket)."""


@quota.command("set")
@click.argument("client_id")
@click.option("--service", "service_id", default=None, help="Limit calls to this service only.")
@click.option("--per-second", type=float, required=True)
@click.option("--burst", type=float, default=None, help="Bucket size (default: the rate).")
@home_option
@reports_errors
def quota_set(
    client_id: str,
    service_id: str | None,
    per_second: float,
    burst: float | None,
    home: Path | None,
) -> None:
    """Set a client's quota (client-wide, or for one service)."""
    inst = load_instance(home)
    with inst.engine.begin() as conn:
        _print(
            quotas.set_quota(
                conn, client_id, per_second, inst.actor, service_id=service_id, burst=burst
            )
        )


@click.group()
def admin() -> None:
    """The instance's administration."""


@admin.group("token")
def admin_token() -> None:
    """Admin API tokens: one per operator or automation, each revocable."""


@admin_token.command("create")
@click.argument("name")
@home_option
@reports_errors
def admin_token_create(name: str, home: Path | None) -> None:
    """Make a token named NAME (e.g. ali.rezaei, ci-deploy) and print it once; only its hash
    is kept. Other tokens keep working."""
    from dargah.registry.admin_tokens import create_token

    inst = load_instance(home)
    with inst.engine.begin() as conn:
        _row, token = create_token(conn, name, inst.actor)
    click.echo(token)


@admin_token.command("list")
@home_option
@reports_errors
def admin_token_list(home: Path | None) -> None:
    """List the tokens: name, who made it and when, status, last use (to the minute)."""
    from dargah.registry.admin_tokens import list_tokens

    inst = load_instance(home)
    with inst.engine.connect() as conn:
        _print(list_tokens(conn))


@admin_token.command("revoke")
@click.argument("name")
@home_option
@reports_errors
def admin_token_revoke(name: str, home: Path | None) -> None:
    """Revoke the token NAME: every node refuses it within seconds."""
    from dargah.registry.admin_tokens import revoke_token

    inst = load_instance(home)
    with inst.engine.begin() as conn:
        _print(revoke_token(conn, name, inst.actor))


commands: list[click.Command] = [member, subsystem, key, service, grant, quota, admin]
