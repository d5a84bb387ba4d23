"""What a client says about where it comes from never reaches a provider: the bus drops
X-Forwarded-*, Forwarded, X-Real-IP and every '_' spelling of the headers it controls, and
sends its own ``Forwarded`` (RFC 7239), believing forwarding headers from trusted proxies only.
A real bus and the recording provider of tests/providers.py show what arrives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from dargah.core.forwarded import ClientAddresses, forwarded_value
from tests.harness import World, make_world
from tests.providers import Provider

SPOOFED = {
    "X-Forwarded-For": "203.0.113.9",
    "X-Forwarded-Host": "admin.internal",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Port": "443",
    "X-Forwarded-Prefix": "/admin",
    "Forwarded": "for=203.0.113.9;host=admin.internal;proto=https",
    "X-Real-IP": "203.0.113.9",
    "True-Client-IP": "203.0.113.9",
    "X_Forwarded_For": "203.0.113.10",
    "GSB_Assertion": "forged.assertion.value",
    "gsb_client": "IR/GOV/10100387143/forged",
    "GSB_Purpose": "forged",
    "Gsb_Subject": "0013542419",
    "gsb_request_id": "00000000-0000-4000-8000-000000000000",
    "Content_Length": "5",
    "Transfer_Encoding": "chunked",
}


@pytest.fixture(scope="module")
def fw(tmp_path_factory: pytest.TempPathFactory, provider: Provider) -> Iterator[World]:
    w = make_world(tmp_path_factory.mktemp("forwarded") / "home", provider.url)
    w.grant("cons", w.add_service("echo.v1"))
    try:
        w.start()
        yield w
    finally:
        w.stop()


def received(w: World, headers: dict[str, str]) -> tuple[dict[str, str], list[list[str]]]:
    r = w.call(w.sid("echo.v1"), token=w.token(), headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body["headers"], body["header_list"]


def test_forwarding_and_underscore_headers_from_a_client_never_reach_the_provider(
    fw: World,
) -> None:
    got, listed = received(fw, {**SPOOFED, "X-Agency-Ref": "kept", "X_Agency_Batch": "kept too"})
    names = [name for name, _value in listed]
    for name in SPOOFED:
        if name != "Forwarded":  # the bus sends its own (next test)
            assert name.lower() not in names, f"{name} reached the provider"
    assert not any(n.startswith("x-forwarded") or n.startswith("x_forwarded") for n in names)
    assert "x-real-ip" not in names and "true-client-ip" not in names
    assert not any("_" in n and n.replace("_", "-").startswith("gsb-") for n in names)
    # the bus's own GSB headers are there, once each, with the bus's values
    assert names.count("gsb-client") == 1 and got["gsb-client"] == fw.clients["cons"].id
    assert names.count("gsb-assertion") == 1
    claims = jwt.decode(got["gsb-assertion"], options={"verify_signature": False})
    assert claims["sub"] == fw.clients["cons"].id
    assert "0013542419" not in str(listed) and "forged" not in str(listed)
    assert "203.0.113" not in str(listed) and "admin.internal" not in str(listed)
    # headers that merely have an underscore, and nothing of the bus's, are passed on
    assert got["x-agency-ref"] == "kept" and got["x_agency_batch"] == "kept too"


def test_the_bus_tells_the_provider_the_address_it_saw_in_one_forwarded_header(
    fw: World,
) -> None:
    _got, listed = received(fw, SPOOFED)
    forwarded = [v for n, v in listed if n == "forwarded"]
    assert forwarded == ["for=127.0.0.1;proto=http"]


def _bus_with(tmp_path: Path, provider: Provider, trusted: str) -> World:
    w = make_world(tmp_path / "home", provider.url)
    w.grant("cons", w.add_service("echo.v1"))
    w.start(DARGAH_TRUSTED_PROXIES=trusted)
    return w


def test_behind_a_trusted_proxy_the_forwarded_client_address_and_scheme_are_believed(
    tmp_path: Path, provider: Provider
) -> None:
    w = _bus_with(tmp_path, provider, "127.0.0.1/32, 10.0.0.0/8")
    try:

        def seen(headers: dict[str, str]) -> str:
            got, listed = received(w, headers)
            assert not any(n.startswith("x-forwarded") for n, _ in listed)
            return got["forwarded"]

        # the right-most address that is not a trusted proxy is the client
        xff = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7, 10.1.2.3"}
        assert seen({**xff, "X-Forwarded-Proto": "https"}) == "for=203.0.113.7;proto=https"
        assert seen({"X-Forwarded-For": "2001:db8::7"}) == 'for="[2001:db8::7]";proto=http'
        assert seen({"Forwarded": 'for="[2001:db8::8]:4711";proto=https'}) == (
            'for="[2001:db8::8]";proto=https'
        )
        # an unreadable hop ends what can be believed: the proxy that sent it is the client
        assert seen({"X-Forwarded-For": "203.0.113.7, not-an-address"}) == (
            "for=127.0.0.1;proto=http"
        )
        assert seen({}) == "for=127.0.0.1;proto=http"
    finally:
        w.stop()


def test_a_proxy_that_is_not_trusted_cannot_choose_the_client_address(
    tmp_path: Path, provider: Provider
) -> None:
    w = _bus_with(tmp_path, provider, "10.0.0.0/8")
    try:
        got, _ = received(w, {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"})
        assert got["forwarded"] == "for=127.0.0.1;proto=http"
    finally:
        w.stop()


def test_client_addresses_read_every_hop_from_the_nearest_one() -> None:
    ca = ClientAddresses("192.0.2.0/24,2001:db8::/32")
    via = [(b"x-forwarded-for", b"203.0.113.1, 198.51.100.2"), (b"x-forwarded-for", b"192.0.2.9")]
    assert ca.client("192.0.2.1", "http", via) == ("198.51.100.2", "http")
    assert ca.client("198.51.100.50", "https", via) == ("198.51.100.50", "https")
    assert ca.client("2001:db8::1", "http", [(b"forwarded", b"for=unknown")]) == (
        "2001:db8::1",
        "http",
    )
    assert ca.client(None, "http", via) == (None, "http")
    assert forwarded_value(None, "http") == b"for=unknown;proto=http"
    with pytest.raises(ValueError, match="DARGAH_TRUSTED_PROXIES"):
        ClientAddresses("10.0.0.0/8, lb.example")
