"""``dargah demo``: the whole platform with sandbox agencies on the embedded default.

The bus (with the management API) listens on ``--port``; the sandbox
agencies, real HTTP providers reached only through the bus, listen on the
next free port. Both run in one process and stop together, cleanly, on
Ctrl-C or SIGTERM (the message log is sealed on the way out).
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

import click

from dargah.client.consumer import AsyncGsbClient
from dargah.console.web.accounts import ensure_user
from dargah.core.settings import Settings
from dargah.demo.contract import client_entry, write_demo_json
from dargah.demo.provision import (
    BIRTH_TOPIC,
    PORTAL_LEGAL_ID,
    PORTAL_MEMBER_NAME,
    TESTER_LEGAL_ID,
    TESTER_NAME,
    _load_secrets,
    _save_secrets,
    admin_token,
    portal_grants,
    provision_agencies,
    provision_catalogue,
    provision_client,
    provision_desks,
    provision_events,
    provision_tls,
    tester_grants,
)
from dargah.http.server import Site, serve
from dargah.http.tls import ServerTls
from dargah.registry.instance import new_secret, open_instance
from dargah.sandbox.agencies import AGENCIES
from dargah.sandbox.apps import build_sandbox_app
from dargah.sandbox.citizens import generate_citizens
from dargah.sandbox.providers import welfare
from dargah.sandbox.providers.common import Publisher
from dargah.server import build_app, configure_logging

log = logging.getLogger("dargah.demo")


def _free_port_after(host: str, port: int) -> int:
    for candidate in range(port + 1, port + 50):
        with socket.socket() as s:
            try:
                s.bind((host, candidate))
                return candidate
            except OSError:
                continue
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def run_demo(settings: Settings) -> None:
    configure_logging(settings.log_level)
    home = settings.home
    engine, info, fresh_token = open_instance(settings)
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    bus_url = (
        settings.public_url.rstrip("/") if settings.public_url else f"http://{host}:{settings.port}"
    )
    sandbox_port = _free_port_after(settings.host, settings.port)
    sandbox_url = f"http://{host}:{sandbox_port}"
    tls_port = _free_port_after(settings.host, sandbox_port)
    tls_url = f"https://{host}:{tls_port}"

    click.echo("Preparing the sandbox ...", err=True)
    token = admin_token(engine, home, fresh_token)
    secrets = _load_secrets(home)
    if "admin_password" not in secrets:
        secrets["admin_password"] = new_secret()[:16]
        _save_secrets(home, secrets)
    ensure_user(engine, "admin", secrets["admin_password"], "operator", "sandbox:provision")
    provision_agencies(engine, info.code, sandbox_url)
    allowed, denied = tester_grants(info.code)
    publisher_key = provision_events(engine, home, info.code, sandbox_url)
    provision_catalogue(engine, home, info.code)
    provision_desks(engine, info.code, sandbox_url)
    tester = provision_client(
        engine,
        home,
        info.code,
        "tester",
        legal_id=TESTER_LEGAL_ID,
        member_name=TESTER_NAME,
        grants_for=allowed,
    )
    portal = provision_client(
        engine,
        home,
        info.code,
        "portal",
        legal_id=PORTAL_LEGAL_ID,
        member_name=PORTAL_MEMBER_NAME,
        grants_for=portal_grants(info.code),
    )
    demo_tls = provision_tls(engine, home, sorted({host, "127.0.0.1", "localhost"}), tester.id)
    tester_entry = client_entry(tester, info.code, allowed, denied)
    # Mutual TLS (RFC 8705): this certificate alone gets the tester tokens bound to it.
    tester_entry["certificate_file"] = str(demo_tls.client_cert.resolve())
    tester_entry["certificate_key_file"] = str(demo_tls.client_key.resolve())
    settings = settings.with_overrides(
        portal_client_id=portal.id,
        portal_key_file=str(portal.private_key_file),
        portal_bus_url=settings.portal_bus_url or bus_url,
    )
    citizens = generate_citizens()
    path = write_demo_json(
        home,
        instance=info.code,
        bus_url=bus_url,
        admin={"username": "admin", "password": secrets["admin_password"], "api_token": token},
        clients=[tester_entry],
        citizens=citizens,
        extra={
            "sandbox_url": sandbox_url,
            "bus_tls_url": tls_url,
            "tls_ca_file": str(demo_tls.server_cert.resolve()),
        },
    )
    engine.dispose()

    welfare.TIMINGS.update(
        review=settings.sandbox_decide_seconds / 3, decide=settings.sandbox_decide_seconds
    )
    main_app = build_app(settings, ["bus", "registry", "console", "portal"])
    sabt = next(a for a in AGENCIES if a.subsystem_code == BIRTH_TOPIC[0])
    sandbox_app = build_sandbox_app(
        info.code,
        bus_url,
        citizens,
        publishers={
            sabt.subsystem_code: _publisher(bus_url, sabt.subsystem_id(info.code), publisher_key)
        },
    )
    # The bus starts first (it serves the keys the sandbox verifies against) and stops last.
    sites = [
        Site(main_app, settings.host, settings.port, name="bus"),
        Site(sandbox_app, settings.host, sandbox_port, lifespan=False, name="sandbox agencies"),
        Site(
            main_app,
            settings.host,
            tls_port,
            lifespan=False,
            name="bus over TLS",
            tls=ServerTls(str(demo_tls.server_cert), str(demo_tls.server_key)),
        ),
    ]

    click.echo(
        f"\nDargah sandbox ({info.code}) is running.\n"
        f"  bus and management API  {bus_url}   (OpenAPI: {bus_url}/api/openapi.json)\n"
        f"  sandbox agencies        {sandbox_url}\n"
        f"  bus over TLS (mTLS)     {tls_url}\n"
        f"  demo.json               {path.resolve()}\n"
        f"  admin API token         in demo.json (admin.api_token)\n"
        "Press Ctrl-C to stop.\n",
        err=True,
    )
    serve(sites)


def _publisher(bus_url: str, client_id: str, key_file: Path) -> Publisher:
    """How a sandbox agency publishes its events: over the bus, with its own key."""
    client = AsyncGsbClient(bus_url, client_id, private_key_file=str(key_file))

    async def publish(topic_code: str, event: dict[str, Any]) -> None:
        try:
            r = await client.publish(f"{client_id}/{topic_code}", event)
        except Exception as exc:  # the registration itself stands; the event is reported
            log.warning("could not publish %s: %s", topic_code, exc)
            return
        if r.status_code != 202:
            log.warning("the bus refused %s: %s %s", topic_code, r.status_code, r.text[:300])

    return publish
