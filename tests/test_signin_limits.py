"""Sign-in failures are limited per client address as well as per name, across processes:
two real processes of one instance share the count through its database (SQLite and
PostgreSQL); behind a trusted proxy the forwarded address counts, from anyone else it does not."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from dargah.console.web.accounts import add_user
from dargah.core.identifiers import is_national_code
from dargah.core.settings import Settings
from dargah.registry.instance import open_instance
from dargah.web import attempts
from dargah.web.attempts import CONSOLE_FAILURES, PORTAL_FAILURES
from tests.console_site import Visitor
from tests.harness import DARGAH, free_port
from tests.portal_client import csrf_of

PASSWORD = "a-long-enough-password"
ATTACKER = {"X-Forwarded-For": "203.0.113.5"}


class Site:
    def __init__(self, home: Path, database_url: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full = {**os.environ, "DARGAH_LOG_LEVEL": "warning", **env}
        if database_url:
            full["DARGAH_DATABASE_URL"] = database_url
        self.proc = subprocess.Popen(
            [
                DARGAH,
                "serve",
                "registry",
                "console",
                "portal",
                "--home",
                str(home),
                "--port",
                str(self.port),
            ],
            env=full,
            stdout=open(home / f"site-{self.port}.log", "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (home / f"site-{self.port}.log").read_text()[-2000:]
            try:
                if httpx.get(f"{self.url}/console/login", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the site did not start in 30 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(timeout=15)


@pytest.fixture
def sites(tmp_path: Path, database_url: str) -> Iterator[tuple[Site, Site]]:
    home = tmp_path / "home"
    home.mkdir()
    engine, _info, _ = open_instance(Settings(home=home, database_url=database_url))
    with engine.begin() as conn:
        add_user(conn, "alice", PASSWORD, "operator", "test")
    engine.dispose()
    trusted = {"DARGAH_TRUSTED_PROXIES": "127.0.0.1/32"}
    a = Site(home, database_url, **trusted)
    try:
        b = Site(home, database_url, **trusted)
        try:
            yield a, b
        finally:
            b.stop()
    finally:
        a.stop()


def console_sign_in(
    base: str, username: str, password: str, headers: dict[str, str]
) -> httpx.Response:
    v = Visitor(base)
    v.get("/console/login", headers=headers)
    return v.post(
        "/console/login",
        {"csrf": v.csrf, "username": username, "password": password},
        headers=headers,
    )


def national_codes() -> Iterator[str]:
    for n in range(100_000_000, 999_999_999):
        for check in range(10):
            code = f"{n}{check}"
            if is_national_code(code):
                yield code
                break


def portal_verify(base: str, code: str, headers: dict[str, str]) -> httpx.Response:
    http = httpx.Client(base_url=base, timeout=20)
    page = http.get("/login", headers=headers)
    cookie = "; ".join(f"{k}={v}" for k, v in page.cookies.items())
    return http.post(
        "/login/verify",
        data={"csrf": csrf_of(page.text), "national_code": code, "code": "123456"},
        headers={**headers, "cookie": cookie},
    )


def test_one_address_trying_many_console_names_is_stopped_in_every_process(
    sites: tuple[Site, Site],
) -> None:
    a, b = sites
    most = CONSOLE_FAILURES.most
    for i in range(most):  # each name fails once: no name is locked, the address is
        site = a if i % 2 else b
        r = console_sign_in(site.url, f"user{i}", "wrong-password-1", ATTACKER)
        assert r.status_code == 401, r.text[:300]
    for site in (a, b):
        r = console_sign_in(site.url, "alice", PASSWORD, ATTACKER)  # even the right password
        assert r.status_code == 429, r.text[:300]
        assert 0 < int(r.headers["retry-after"]) <= CONSOLE_FAILURES.window.total_seconds()
        assert "از این نشانی تلاش ناموفق زیادی" in r.text
    # another client, forwarded by the trusted proxy, signs in
    r = console_sign_in(b.url, "alice", PASSWORD, {"X-Forwarded-For": "203.0.113.6"})
    assert r.status_code == 303, r.text[:300]


def test_a_forwarded_address_from_an_untrusted_peer_is_not_what_is_counted(
    sites: tuple[Site, Site], tmp_path: Path, database_url: str
) -> None:
    a, _b = sites
    for i in range(CONSOLE_FAILURES.most):
        assert console_sign_in(a.url, f"user{i}", "wrong-password-1", ATTACKER).status_code == 401
    assert console_sign_in(a.url, "alice", PASSWORD, ATTACKER).status_code == 429
    # A process that trusts no proxy counts the peer (127.0.0.1), whatever X-Forwarded-For says.
    c = Site(tmp_path / "home", database_url)
    try:
        r = console_sign_in(c.url, "alice", PASSWORD, ATTACKER)
        assert r.status_code == 303, r.text[:300]
    finally:
        c.stop()


def test_one_address_trying_many_national_codes_on_the_portal_gets_a_persian_429(
    sites: tuple[Site, Site],
) -> None:
    a, b = sites
    codes = national_codes()
    attacker = {"X-Forwarded-For": "203.0.113.7"}
    for i in range(PORTAL_FAILURES.most):
        r = portal_verify((a if i % 2 else b).url, next(codes), attacker)
        assert r.status_code == 400, r.text[:300]
    for site in (a, b):
        r = portal_verify(site.url, next(codes), attacker)
        assert r.status_code == 429, r.text[:300]
        assert 0 < int(r.headers["retry-after"]) <= PORTAL_FAILURES.window.total_seconds()
        assert "دقیقه دیگر دوباره امتحان کنید" in r.text
    # asking for a new code is refused too, before anything is looked up
    http = httpx.Client(base_url=a.url, timeout=20)
    page = http.get("/login", headers=attacker)
    cookie = "; ".join(f"{k}={v}" for k, v in page.cookies.items())
    r = http.post(
        "/login",
        data={"csrf": csrf_of(page.text), "national_code": next(codes)},
        headers={**attacker, "cookie": cookie},
    )
    assert r.status_code == 429 and "retry-after" in r.headers
    # someone else is not held up
    assert portal_verify(a.url, next(codes), {"X-Forwarded-For": "203.0.113.8"}).status_code == 400


def test_the_wait_ends_when_the_attempt_that_filled_the_limit_leaves_the_window(
    tmp_path: Path, database_url: str
) -> None:
    engine, _info, _ = open_instance(Settings(home=tmp_path / "h", database_url=database_url))
    t0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    limit = CONSOLE_FAILURES
    try:
        with engine.begin() as conn:
            for i in range(limit.most):
                attempts.check(conn, limit, "203.0.113.5", t0 + timedelta(seconds=i))
                attempts.record(conn, limit, "203.0.113.5", t0 + timedelta(seconds=i))
            later = t0 + timedelta(seconds=limit.most)
            with pytest.raises(attempts.TooManyAttempts) as info:
                attempts.check(conn, limit, "203.0.113.5", later)
            assert info.value.retry_after == limit.window.total_seconds() - limit.most
            assert "۱۵ دقیقه" in info.value.message_fa
            attempts.check(conn, limit, "203.0.113.6", later)  # another address
            attempts.check(conn, PORTAL_FAILURES, "203.0.113.5", later)  # another realm
            attempts.check(conn, limit, "203.0.113.5", t0 + limit.window + timedelta(seconds=1))
    finally:
        engine.dispose()
