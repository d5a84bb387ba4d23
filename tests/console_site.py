"""A running instance with the console's pages, its accounts, and an HTTP client that signs in.

The console's cookies are ``Secure``; over plain HTTP on loopback httpx would not send them
back, so :class:`Visitor` carries them in the ``Cookie`` header itself.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from dargah.console.web.accounts import add_user
from dargah.registry import grants, incidents, services
from dargah.store.tables import grants as grants_table
from tests.harness import DARGAH, OTHER_LEGAL_ID, PROVIDER_LEGAL_ID, World, free_port

PASSWORD = "correct horse battery"
USERS = {
    "admin": ("operator", None),
    "auditor": ("auditor", None),
    "prov-admin": ("agency-admin", PROVIDER_LEGAL_ID),
    "other-admin": ("agency-admin", OTHER_LEGAL_ID),
    "locked": ("auditor", None),
}


def prepare(w: World) -> dict[str, Any]:
    """Accounts of every role, a service for each of two agencies, grant requests on both."""
    prov_service = w.add_service("person.v1")
    other_client = f"{w.member(OTHER_LEGAL_ID)}/other"
    other_service = f"{other_client}/records.v1"
    with w.engine.begin() as conn:
        for name, (role, legal_id) in USERS.items():
            member = w.member(legal_id) if legal_id else None
            add_user(conn, name, PASSWORD, role, "test", member_id=member, display_name=name)
        services.add_service(conn, other_service, w.provider_url + "/echo", "test", title="سوابق")
        cons = w.clients["cons"].id
        on_prov = grants.request_grant(conn, cons, prov_service, ["identity-verification"], "t")
        on_other = grants.request_grant(conn, cons, other_service, ["identity-verification"], "t")
        opened = incidents.open_cause(
            conn,
            "host:http://127.0.0.1:9",
            f"{w.member(PROVIDER_LEGAL_ID)}/prov",
            [prov_service],
            "2026-12-01T08:00:00Z",
            "provider down",
            "ارائه‌دهنده از دسترس خارج است",
            3600,
        )
        assert opened is not None
    return {
        "prov_service": prov_service,
        "other_service": other_service,
        "other_client": other_client,
        "prov_client": f"{w.member(PROVIDER_LEGAL_ID)}/prov",
        "grant_on_prov": on_prov["id"],
        "grant_on_other": on_other["id"],
        "incident": opened["id"],
    }


def grant_status(w: World, grant_id: int) -> str:
    from sqlalchemy import select

    with w.engine.connect() as conn:
        q = select(grants_table.c.status).where(grants_table.c.id == grant_id)
        return str(conn.execute(q).scalar_one())


def start_site(w: World) -> None:
    """``dargah serve bus registry console portal`` for the world's instance."""
    w.port = w.port or free_port()
    log = open(w.settings.home / "site.log", "ab")
    env = {**os.environ, "DARGAH_LOG_LEVEL": "warning"}
    if w.settings.database_url:
        env["DARGAH_DATABASE_URL"] = w.settings.database_url
    w.bus = subprocess.Popen(
        [
            *(DARGAH, "serve", "bus", "registry", "console", "portal"),
            *("--home", str(w.settings.home), "--port", str(w.port)),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if w.bus.poll() is not None:
            raise RuntimeError((w.settings.home / "site.log").read_text()[-3000:])
        try:
            if httpx.get(f"{w.url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the site did not become ready in 30 s")


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    return found.group(1) if found else ""


@dataclass
class Visitor:
    """A browser-less visitor that keeps the console's cookies itself."""

    base: str
    cookies: dict[str, str] = field(default_factory=dict)
    csrf: str = ""

    def _keep(self, response: httpx.Response) -> httpx.Response:
        for header in response.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            value = rest.split(";", 1)[0]
            if "max-age=0" in header.lower() or not value.strip('"'):
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return response

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return headers

    def get(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        r = httpx.get(self.base + path, headers=self._headers(headers), timeout=30, **kw)
        if 'name="csrf"' in r.text:
            self.csrf = csrf_of(r.text)
        return self._keep(r)

    def post(
        self, path: str, data: dict[str, Any], headers: dict[str, str] | None = None
    ) -> httpx.Response:
        r = httpx.post(self.base + path, data=data, headers=self._headers(headers), timeout=30)
        return self._keep(r)

    def sign_in(self, username: str, password: str = PASSWORD) -> httpx.Response:
        self.get("/console/login")
        return self.post(
            "/console/login", {"csrf": self.csrf, "username": username, "password": password}
        )


def signed_in(base: str, username: str) -> Visitor:
    v = Visitor(base)
    r = v.sign_in(username)
    assert r.status_code == 303 and "dargah_console" in v.cookies, r.text[:500]
    v.get("/console/status")  # picks up the session's CSRF token
    return v
