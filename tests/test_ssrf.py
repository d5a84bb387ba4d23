"""Providers cannot turn the bus against its own network: outbound URLs in every spelling,
on a production instance (IR) and a sandbox (TEST), at registration and at connect time."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from dargah.bus.outbound import OutboundGuard, Refused
from dargah.client.consumer import GsbClient
from dargah.client.tokens import Credentials
from dargah.core.errors import BadRequest
from dargah.core.netaddr import (
    BadTarget,
    TargetPolicy,
    check_url,
    is_local_address,
    parse_host,
    target_policy,
)
from dargah.core.settings import Settings
from dargah.registry import members, services, topics
from dargah.registry.instance import open_instance
from dargah.store.tables import services as services_table
from dargah.store.tables import subscriptions
from tests.harness import PROVIDER_LEGAL_ID, World, free_port, make_world
from tests.providers import Provider
from tests.webhooks import Webhook, add_topic, delivery_rows, make_event, subscribe, wait_until

METADATA = ipaddress.ip_address("169.254.169.254")
LOOPBACK = ipaddress.ip_address("127.0.0.1")

# (URL, refused on a production instance, refused on a sandbox): every spelling a resolver
# or a URL parser reads as an address is judged as that address.
SPELLINGS = [
    ("http://169.254.169.254/latest/meta-data", True, True),
    ("http://2852039166/", True, True),
    ("http://0xa9fea9fe/", True, True),
    ("http://0xA9FEA9FE/", True, True),
    ("http://0251.0376.0251.0376/", True, True),
    ("http://0xa9.0xfe.0xa9.0xfe/", True, True),
    ("http://169.254.43518/", True, True),
    ("http://169.16689662/", True, True),
    ("http://0251.254.169.254/", True, True),
    ("http://169.254.169.254./", True, True),
    ("http://[::ffff:169.254.169.254]/", True, True),
    ("http://[::ffff:a9fe:a9fe]/", True, True),
    ("http://[64:ff9b::a9fe:a9fe]/", True, True),
    ("http://[2002:a9fe:a9fe::1]/", True, True),
    ("http://[fe80::1]/", True, True),
    ("http://0/", True, True),
    ("http://0.0.0.0:8080/", True, True),
    ("http://0x0/", True, True),
    ("http://[::]/", True, True),
    ("http://224.0.0.1/", True, True),
    ("http://255.255.255.255/", True, True),
    ("http://127.0.0.1:9/", True, False),
    ("http://127.1:9/", True, False),
    ("http://0x7f000001:9/", True, False),
    ("http://2130706433:9/", True, False),
    ("http://017700000001:9/", True, False),
    ("http://0x7f.0.0.1:9/", True, False),
    ("http://127.0.0.1.:9/", True, False),
    ("http://[::1]:9/", True, False),
    ("http://[::ffff:127.0.0.1]:9/", True, False),
    ("http://[::ffff:7f00:1]:9/", True, False),
    ("http://240.0.0.1/", True, False),
    # never an address: an invalid spelling is refused everywhere, not guessed at
    ("http://%31%32%37.0.0.1/", True, True),
    ("http://[fe80::1%25eth0]/", True, True),
    ("http://256.0.0.1/", True, True),
    ("http://1.2.3.4.5/", True, True),
    ("http://08.0.0.1/", True, True),
    ("http://evil.example\\@127.0.0.1/", True, True),
    ("http://[v1.fe]/", True, True),
    ("http://[::1]x/", True, True),
    # fine everywhere
    ("https://sabt.example/api", False, False),
    ("http://sabt.example:8443/v1", False, False),
    ("http://10.20.30.40:8080/", False, False),
    ("http://[2001:db8::1]/", False, False),
    ("http://localhost:9/", False, False),  # a name: checked when the bus connects
]
USERINFO = [
    "http://gsb:secret@sabt.example/",
    "http://gsb@sabt.example/",
    "http://:secret@sabt.example/",
    "http://127.0.0.1:9@evil.example/",
    "http://sabt.example@169.254.169.254/",
]


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    out = {}
    for instance in ("IR", "TEST"):
        home = tmp_path_factory.mktemp(f"ssrf-{instance}")
        engine, _info, _ = open_instance(Settings(home=home, instance=instance))
        member = f"{instance}/GOV/{PROVIDER_LEGAL_ID}"
        with engine.begin() as conn:
            members.add_member(conn, member, "ثبت احوال", "test")
            members.add_subsystem(conn, f"{member}/sabt", "test")
        out[instance] = engine
    yield out
    for engine in out.values():
        engine.dispose()  # type: ignore[attr-defined]


@pytest.mark.parametrize(("url", "on_ir", "on_test"), SPELLINGS)
def test_each_spelling_of_a_forbidden_address_is_refused_at_registration(
    engines: dict[str, object], url: str, on_ir: bool, on_test: bool
) -> None:
    for instance, refused in (("IR", on_ir), ("TEST", on_test)):
        engine = engines[instance]
        sid = f"{instance}/GOV/{PROVIDER_LEGAL_ID}/sabt/s{abs(hash((url, instance))) % 10**8}.v1"
        with engine.begin() as conn:  # type: ignore[attr-defined]
            if refused:
                with pytest.raises(BadRequest) as info:
                    services.add_service(conn, sid, url, "test")
                assert info.value.detail_fa, "a refusal says why in Persian too"
            else:
                services.add_service(conn, sid, url, "test")


def test_the_spellings_of_the_metadata_and_loopback_addresses_read_as_those_addresses() -> None:
    assert parse_host("2852039166") == METADATA
    assert parse_host("0xa9fea9fe") == METADATA
    assert parse_host("0251.0376.0251.0376") == METADATA
    assert parse_host("169.16689662") == METADATA
    assert parse_host("127.1") == LOOPBACK
    assert parse_host("0x7f.1") == LOOPBACK
    assert parse_host("sabt.example") is None


@pytest.mark.parametrize("url", USERINFO)
def test_a_url_with_a_user_name_or_password_is_refused_and_never_stored(
    engines: dict[str, object], url: str
) -> None:
    for instance in ("IR", "TEST"):
        engine = engines[instance]
        sid = f"{instance}/GOV/{PROVIDER_LEGAL_ID}/sabt/u{abs(hash(url)) % 10**8}.v1"
        with engine.begin() as conn, pytest.raises(BadRequest) as info:  # type: ignore[attr-defined]
            services.add_service(conn, sid, url, "test")
        assert "user name or password" in info.value.detail
        with engine.connect() as conn:  # type: ignore[attr-defined]
            stored = conn.execute(select(services_table.c.base_url)).scalars().all()
        assert not any("secret" in u or "@" in u for u in stored)


def test_a_changed_base_url_and_a_webhook_follow_the_same_rules(
    engines: dict[str, object],
) -> None:
    engine = engines["IR"]
    member = f"IR/GOV/{PROVIDER_LEGAL_ID}"
    with engine.begin() as conn:  # type: ignore[attr-defined]
        services.add_service(conn, f"{member}/sabt/change.v1", "https://sabt.example", "test")
        for bad in ("http://gsb:secret@sabt.example/", "http://0x7f000001/"):
            with pytest.raises(BadRequest):
                services.update_service(conn, f"{member}/sabt/change.v1", {"base_url": bad}, "t")
        topics.add_topic(conn, f"{member}/sabt/births", "test")
        for bad in ("http://u:p@hooks.example/", "http://[::ffff:169.254.169.254]/h"):
            with pytest.raises(BadRequest):
                topics.add_subscription(
                    conn, f"{member}/sabt", f"{member}/sabt/births", "t", webhook=bad
                )


def test_private_ranges_are_refused_only_when_the_operator_forbids_them() -> None:
    allowed = TargetPolicy(production=True)
    forbidding = TargetPolicy(production=True, forbid_private=True)
    sandbox = TargetPolicy(production=False, forbid_private=True)
    for url in (
        "http://10.1.2.3/",
        "http://172.20.0.1/",
        "http://192.168.1.1/",
        "http://[fd00::1]/",
    ):
        check_url(url, allowed)
        check_url(url, sandbox)
        with pytest.raises(BadTarget, match="private"):
            check_url(url, forbidding)
    with pytest.raises(BadTarget, match="private"):
        check_url("http://[::ffff:10.1.2.3]/", forbidding)


def test_the_allow_list_exempts_a_sidecar_but_never_metadata_nor_the_bus_itself() -> None:
    policy = TargetPolicy(
        production=True,
        allowed=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("169.254.0.0/16")),
        own_port=8000,
        own_host=ipaddress.ip_address("127.0.0.1"),
    )
    check_url("http://127.0.0.1:9/", policy)
    with pytest.raises(BadTarget, match="own address"):
        check_url("http://127.0.0.1:8000/", policy)
    with pytest.raises(BadTarget, match="own address"):
        check_url("http://2130706433:8000/", policy)
    with pytest.raises(BadTarget, match="link-local"):
        check_url("http://169.254.169.254/", policy)


def test_the_bus_public_url_is_its_own_address_too() -> None:
    policy = target_policy(Settings(public_url="https://GSB.example.ir"), production=True)
    for url in (
        "https://gsb.example.ir/",
        "https://gsb.example.ir:443/x",
        "http://GSB.example.ir:443/",
    ):
        with pytest.raises(BadTarget, match="own public URL"):
            check_url(url, policy)
    check_url("https://gsb.example.ir:8443/", policy)
    check_url(
        "https://gsb.example.ir/",
        target_policy(Settings(public_url="https://gsb.example.ir"), production=False),
    )


def test_the_bus_listening_on_every_address_counts_each_address_of_its_machine_as_its_own() -> None:
    assert is_local_address(LOOPBACK)
    assert not is_local_address(ipaddress.ip_address("203.0.113.77"))
    policy = TargetPolicy(
        production=True, allowed=(ipaddress.ip_network("0.0.0.0/0"),), own_port=8000
    )
    with pytest.raises(BadTarget, match="own address"):
        check_url("http://127.0.0.1:8000/", policy)
    check_url("http://203.0.113.77:8000/", policy)
    check_url("http://127.0.0.1:8001/", policy)


# -- at connect time, through the real bus ------------------------------------------------


def _register(w: World, code: str, url: str) -> str:
    sid = w.sid(code)
    with w.engine.begin() as conn:
        services.add_service(conn, sid, url, "test", settings=w.settings)
    w.grant("cons", sid)
    return sid


def _call(w: World, sid: str) -> httpx.Response:
    """A call as ``cons``, with a token got by private_key_jwt (production has no secrets)."""
    c = w.clients["cons"]
    creds = Credentials.build(c.id, f"{w.url}/oauth/token", private_key_file=str(c.key_file))
    r = httpx.post(creds.token_url, data=creds.token_form())
    assert r.status_code == 200, r.text
    return w.call(sid, "/x", token=r.json()["access_token"], purpose=None, subject=None)


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory, provider: Provider) -> Iterator[World]:
    """A production instance with no allow list, where ``by-name.v1`` is a provider at
    ``localhost``: loopback is refused however it is named."""
    w = make_world(
        tmp_path_factory.mktemp("ssrf-ir") / "home", provider.url, instance="IR", outbound_allow=""
    )
    _register(w, "by-name.v1", f"http://localhost:{provider.port}/echo")
    try:
        w.start(DARGAH_HEALTH_INTERVAL="0.5")
        yield w
    finally:
        w.stop()


def test_a_name_that_resolves_to_loopback_is_refused_when_the_bus_connects(
    production: World,
) -> None:
    r = _call(production, production.sid("by-name.v1"))
    assert r.status_code == 502, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["code"] == "provider-unavailable"
    assert "localhost (127.0.0.1)" in body["detail"] and "loopback" in body["detail"]
    assert "x-provider" not in r.headers  # the provider never answered


def test_the_health_probe_goes_through_the_same_check(production: World) -> None:
    headers = {"Authorization": f"Bearer {production.admin_token}"}
    deadline = time.monotonic() + 20
    probe = None
    while time.monotonic() < deadline:
        status = httpx.get(f"{production.url}/api/v1/status", headers=headers).json()
        probe = status["agencies"][0]["services"][0]["probe"]
        if probe is not None:
            break
        time.sleep(0.2)
    assert probe is not None, "no health probe within 20 s"
    assert not probe["ok"] and "loopback" in probe["error"], probe


def test_the_same_name_on_a_sandbox_instance_reaches_the_provider(
    tmp_path: Path, provider: Provider
) -> None:
    w = make_world(tmp_path / "home", provider.url)
    sid = _register(w, "by-name.v1", f"http://localhost:{provider.port}/echo")
    try:
        w.start()
        r = _call(w, sid)
        assert r.status_code == 200, r.text
        assert r.headers["x-provider"] == "echo"
    finally:
        w.stop()


def test_a_production_bus_refuses_to_call_its_own_address_even_on_an_allowed_range(
    tmp_path: Path, provider: Provider
) -> None:
    w = make_world(tmp_path / "home", provider.url, instance="IR")  # loopback allowed here
    w.port = free_port()
    ok = _register(w, "sidecar.v1", f"{provider.url}/echo")
    # Registration cannot know the port a bus process will listen on; the connect-time check does.
    loop = _register(w, "loop.v1", f"http://127.0.0.1:{w.port}/r1")
    try:
        w.start()
        assert _call(w, ok).status_code == 200
        r = _call(w, loop)
        assert r.status_code == 502, r.text
        assert "own address" in r.json()["detail"]
    finally:
        w.stop()


def test_the_management_api_refuses_a_forbidden_url_with_a_problem(production: World) -> None:
    headers = {"Authorization": f"Bearer {production.admin_token}"}
    for url in ("http://gsb:secret@sabt.example/", "http://0xa9fea9fe/", "http://127.1:9/"):
        r = httpx.post(
            f"{production.url}/api/v1/services",
            json={"id": production.sid("api.v1"), "base_url": url},
            headers=headers,
        )
        assert r.status_code == 400, r.text
        assert r.headers["content-type"] == "application/problem+json"
        body = r.json()
        assert body["code"] == "bad-request" and body["detail_fa"]
        assert "secret" not in r.text


def test_a_webhook_stored_before_these_rules_is_still_refused_when_the_bus_connects(
    tmp_path: Path, provider: Provider
) -> None:
    w = make_world(tmp_path / "home", provider.url)
    topic_id = add_topic(w)
    with Webhook() as hook:
        sub_id = subscribe(w, "cons", topic_id, webhook=hook.url)
        with w.engine.begin() as conn:  # as an older release may have stored it
            conn.execute(
                update(subscriptions)
                .where(subscriptions.c.id == sub_id)
                .values(webhook_url=f"http://[::ffff:169.254.169.254]:{hook.port}/hook")
            )
        try:
            w.start()
            c = w.clients["sabt"]
            with GsbClient(w.url, c.id, client_secret=c.secret) as pub:
                assert pub.publish(topic_id, make_event()).status_code == 202

            def refused() -> bool:
                rows = delivery_rows(w.engine, sub_id)
                return bool(rows) and "link-local" in (rows[0]["last_error"] or "")

            assert wait_until(refused, 20), delivery_rows(w.engine, sub_id)
            assert hook.hits == []
        finally:
            w.stop()


def test_a_burst_of_new_connections_shares_one_resolution_which_expires() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        real = loop.getaddrinfo
        asked: list[str] = []

        async def counting(host: Any, *args: Any, **kw: Any) -> Any:
            asked.append(host)
            await asyncio.sleep(0.05)  # a resolver that takes its time
            return await real(host, *args, **kw)

        loop.getaddrinfo = counting  # type: ignore[method-assign]
        sandbox = OutboundGuard(TargetPolicy(production=False), ttl=0.3)
        answers = await asyncio.gather(*(sandbox.addresses("localhost", 80) for _ in range(20)))
        assert asked == ["localhost"]
        assert all(a == answers[0] for a in answers) and (2, "127.0.0.1") in answers[0]
        await sandbox.addresses("localhost", 80)
        assert len(asked) == 1  # from the cache
        await asyncio.sleep(0.4)
        await sandbox.addresses("localhost", 80)
        assert len(asked) == 2  # expired: resolved again
        production = OutboundGuard(TargetPolicy(production=True))
        for _ in range(2):
            with pytest.raises(Refused, match="loopback"):
                await production.addresses("localhost", 80)
        assert asked.count("localhost") == 3  # the refusal is remembered as well

    asyncio.run(scenario())
