"""Every address the bus serves itself states its authentication (``dargah.bus.app.ROUTES``),
and each one asks for what it states."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import httpx
import pytest

from dargah.bus.app import ROUTES, BusApp
from tests.harness import World


def test_every_address_the_dispatcher_knows_is_declared() -> None:
    source = inspect.getsource(BusApp._bus)
    handled = set(re.findall(r'path == "([^"]+)"', source))
    handled |= set(re.findall(r'path\.startswith\("([^"]+)"\)', source))
    assert handled, "the dispatcher's addresses were not found"
    undeclared = handled - set(ROUTES)
    assert not undeclared, f"addresses without a stated authentication: {undeclared}"
    for auth, reason in ROUTES.values():
        assert auth in ("bearer", "client", "public") and len(reason) > 20


def test_each_address_asks_for_what_it_states(world: World) -> None:
    w = world
    sid = w.add_service("plain.v1")
    w.grant("cons", sid)
    w.start()
    samples = {
        "/r1/": f"/r1/{sid}/x",
        "/r1/meta/": "/r1/meta/services",
        "/e1/": f"/e1/{w.clients['cons'].id}/topic.v1",
    }
    for address, (auth, _reason) in ROUTES.items():
        url = w.url + samples.get(address, address)
        if auth == "bearer":
            method = "POST" if address == "/e1/" else "GET"
            r = httpx.request(method, url, content=b"{}")
            assert r.status_code == 401, (address, r.status_code)
            assert r.headers.get("gsb-error") == "unauthenticated", address
        elif auth == "client":
            r = httpx.post(url, data={"grant_type": "client_credentials"})
            assert r.status_code in (400, 401) and "access_token" not in r.text, address
            good = httpx.post(
                url,
                data={
                    "grant_type": "client_credentials",
                    "client_id": w.clients["cons"].id,
                    "client_secret": w.clients["cons"].secret,
                },
            )
            assert good.status_code == 200 and "access_token" in good.json(), address
        else:
            r = httpx.get(url)
            assert r.status_code == 200, (address, r.status_code)


def test_a_refused_token_request_cannot_write_the_audit_trail_in_anothers_name(
    world: World,
) -> None:
    from dargah.registry import audit

    w = world
    w.start()
    forged = "api:operator"
    r = httpx.post(
        f"{w.url}/oauth/token",
        data={"grant_type": "client_credentials", "client_id": forged, "client_secret": "x"},
    )
    assert r.status_code in (400, 401)
    wrong = httpx.post(
        f"{w.url}/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": w.clients["cons"].id,
            "client_secret": "wrong",
        },
    )
    assert wrong.status_code in (400, 401)
    with w.engine.connect() as conn:
        entries = [e for e in audit.entries(conn) if e["action"] == "security:token:refuse"]
    actors = {e["actor"] for e in entries}
    assert forged not in actors and "oauth:unknown" in actors
    assert w.clients["cons"].id in actors  # a registered client's refusal names it
    assert any((e["after"] or {}).get("claimed_client_id") == forged for e in entries)


def test_provider_addresses_that_would_turn_the_bus_against_its_own_network_are_refused(
    tmp_path: Path,
) -> None:
    from dargah.core.errors import BadRequest
    from dargah.core.settings import Settings
    from dargah.registry import members, services
    from dargah.registry.instance import open_instance

    for instance in ("TEST", "IR"):
        engine, _info, _ = open_instance(Settings(home=tmp_path / instance, instance=instance))
        member = f"{instance}/GOV/10100387143"
        with engine.begin() as conn:
            members.add_member(conn, member, "ثبت احوال", "test")
            members.add_subsystem(conn, f"{member}/sabt", "test")
        bad = [
            "http://169.254.169.254/latest",
            "http://[fe80::1]:80/",
            "http://0.0.0.0:80/",
            "http://127.0.0.1:9/سلام",
            "http://127.0.0.1:9/a b",
        ]
        for i, url in enumerate(bad):
            with engine.begin() as conn, pytest.raises(BadRequest):
                services.add_service(conn, f"{member}/sabt/s{i}.v1", url, "test")
        with engine.begin() as conn:
            services.add_service(conn, f"{member}/sabt/ok.v1", "https://sabt.example/api", "test")
            if instance == "TEST":  # a sandbox's providers may be on loopback, not production's
                services.add_service(conn, f"{member}/sabt/local.v1", "http://127.0.0.1:9/", "test")
            else:
                with pytest.raises(BadRequest):
                    services.add_service(
                        conn, f"{member}/sabt/local.v1", "http://127.0.0.1:9/", "test"
                    )
            with pytest.raises(BadRequest):
                services.update_service(
                    conn, f"{member}/sabt/ok.v1", {"base_url": "http://169.254.169.254/"}, "test"
                )
        engine.dispose()
