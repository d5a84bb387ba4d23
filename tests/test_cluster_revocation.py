"""A revocation made through one node is refused by the others within 5 s: an admin API
token, and a client's key. Two nodes of one instance on PostgreSQL and Redis, each with a
home of its own, as on two machines."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dargah.client.tokens import Credentials
from tests.cluster import REDIS_URL, Node
from tests.harness import PURPOSE, SUBJECT, World, make_world
from tests.providers import Provider

WITHIN = 5.0


@pytest.fixture
def two_nodes(
    tmp_path: Path, provider: Provider, pg_database_url: str
) -> Iterator[tuple[World, Node, Node]]:
    w = make_world(tmp_path / "home", provider.url, pg_database_url)
    a = Node("a", tmp_path / "a", {})
    b = Node("b", tmp_path / "b", {})
    env = {
        "DARGAH_DATABASE_URL": pg_database_url,
        "DARGAH_REDIS_URL": REDIS_URL,
        "DARGAH_PUBLIC_URL": a.url,  # one instance, one audience, whichever node answers
    }
    a.env.update(env)
    b.env.update(env)
    try:
        a.start()
        b.start()
        yield w, a, b
    finally:
        a.stop()
        b.stop()
        w.engine.dispose()


def _refused_by(url: str, headers: dict[str, str], status: int) -> float:
    started = time.monotonic()
    with httpx.Client(timeout=5) as http:
        while time.monotonic() - started < WITHIN + 5:
            if http.get(url, headers=headers).status_code == status:
                return time.monotonic() - started
            time.sleep(0.05)
    raise AssertionError(f"{url} still accepted a revoked credential after {WITHIN + 5:g} s")


def test_an_admin_token_revoked_on_one_node_is_refused_by_the_other_within_5_s(
    two_nodes: tuple[World, Node, Node],
) -> None:
    w, a, b = two_nodes
    operator = {"Authorization": f"Bearer {w.admin_token}"}
    made = httpx.post(f"{a.url}/api/v1/admin-tokens", json={"name": "ci"}, headers=operator)
    assert made.status_code == 201, made.text
    ci = {"Authorization": f"Bearer {made.json()['token']}"}
    assert httpx.get(f"{b.url}/api/v1/members", headers=ci).status_code == 200
    assert httpx.post(f"{a.url}/api/v1/admin-tokens/ci/revoke", headers=operator).status_code == 200
    took = _refused_by(f"{b.url}/api/v1/members", ci, 401)
    print(f"\nadmin token refused by the other node {took:.2f} s after its revocation")
    assert took < WITHIN
    assert httpx.get(f"{b.url}/api/v1/members", headers=operator).status_code == 200


def test_a_client_key_revoked_on_one_node_stops_its_tokens_on_the_other_within_5_s(
    two_nodes: tuple[World, Node, Node],
) -> None:
    w, a, b = two_nodes
    sid = w.add_service("lookup.v1")
    w.grant("cons", sid)
    c = w.clients["cons"]
    creds = Credentials.build(c.id, f"{a.url}/oauth/token", private_key_file=str(c.key_file))
    r = httpx.post(f"{a.url}/oauth/token", data=creds.token_form())
    assert r.status_code == 200, r.text
    call = {
        "Authorization": f"Bearer {r.json()['access_token']}",
        "GSB-Purpose": PURPOSE,
        "GSB-Subject": SUBJECT,
    }
    url = f"{b.url}/r1/{sid}/x"
    deadline = time.monotonic() + WITHIN  # the grant, made a moment ago, reaches b first
    while httpx.get(url, headers=call).status_code != 200:
        assert time.monotonic() < deadline, "the grant did not reach the other node"
        time.sleep(0.1)
    operator = {"Authorization": f"Bearer {w.admin_token}"}
    key_url = f"{a.url}/api/v1/subsystems/{c.id}/keys/{c.kid}/revoke"
    revoked = httpx.post(key_url, headers=operator)
    assert revoked.status_code == 200, revoked.text
    took = _refused_by(url, call, 401)
    print(f"\nkey's token refused by the other node {took:.2f} s after the key's revocation")
    assert took < WITHIN
