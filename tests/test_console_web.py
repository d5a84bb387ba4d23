"""The console's pages over real HTTP: sign-in, roles, agencies kept apart, CSRF, bad input.

One instance (``dargah serve bus registry console portal``) serves the whole module.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dargah.console.web.app import build_console
from dargah.console.web.guard import declared_access
from tests.console_site import (
    PASSWORD,
    Visitor,
    grant_status,
    prepare,
    signed_in,
    start_site,
)
from tests.harness import DARGAH, OTHER_LEGAL_ID, PROVIDER_LEGAL_ID, SUBJECT, World, make_world
from tests.providers import Provider


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, provider: Provider, module_database_url: str
) -> Iterator[tuple[World, dict[str, Any]]]:
    w = make_world(tmp_path_factory.mktemp("console") / "home", provider.url, module_database_url)
    ids = prepare(w)
    w.grant("other", ids["prov_service"])
    start_site(w)
    r = w.call(ids["prov_service"], "/x", token=w.token("other"), subject=SUBJECT)
    assert r.status_code == 200, r.text
    try:
        yield w, ids
    finally:
        w.stop()
        w.engine.dispose()


def _get_routes() -> list[str]:
    app = build_console(engine=None)  # type: ignore[arg-type]
    return sorted({r.path for r in app.routes if "GET" in (getattr(r, "methods", None) or ())})


def _post_routes() -> list[str]:
    app = build_console(engine=None)  # type: ignore[arg-type]
    return sorted({r.path for r in app.routes if "POST" in (getattr(r, "methods", None) or ())})


def test_anonymous_visitors_are_sent_to_sign_in_from_every_protected_page(
    site: tuple[World, dict[str, Any]],
) -> None:
    w, _ = site
    app = build_console(engine=None)  # type: ignore[arg-type]
    for route in app.routes:
        access = declared_access(route)
        assert access is not None
        if access.public_reason is not None:
            continue
        for method in sorted(getattr(route, "methods", None) or ()):
            if method == "HEAD":
                continue
            v = Visitor(w.url)
            r = v.get(route.path) if method == "GET" else v.post(route.path, {"id": "1"})
            if method == "GET":
                assert r.status_code == 303, (route.path, r.status_code)
                assert r.headers["location"].startswith("/console/login?next=")
            else:
                assert r.status_code == 401, (route.path, r.status_code)


def test_a_wrong_password_is_refused_in_persian_and_sets_no_session(
    site: tuple[World, dict[str, Any]],
) -> None:
    w, _ = site
    v = Visitor(w.url)
    r = v.sign_in("admin", "not the password")
    assert r.status_code == 401 and "گذرواژه درست نیست" in r.text
    assert "dargah_console" not in v.cookies


def test_five_failures_lock_a_username_even_for_the_right_password(
    site: tuple[World, dict[str, Any]],
) -> None:
    w, _ = site
    for _ in range(5):
        assert Visitor(w.url).sign_in("locked", "wrong password!").status_code == 401
    r = Visitor(w.url).sign_in("locked", PASSWORD)
    assert r.status_code == 429 and "۱۵ دقیقه" in r.text


def test_the_session_cookie_is_secure_httponly_and_lax(site: tuple[World, dict[str, Any]]) -> None:
    w, _ = site
    v = Visitor(w.url)
    v.get("/console/login")
    r = v.post("/console/login", {"csrf": v.csrf, "username": "admin", "password": PASSWORD})
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("dargah_console="))
    assert "Secure" in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    assert r.headers["location"] == "/console/status"


def test_a_form_without_its_csrf_token_or_from_another_site_is_refused(
    site: tuple[World, dict[str, Any]],
) -> None:
    w, ids = site
    admin = signed_in(w.url, "admin")
    form = {"id": str(ids["grant_on_other"]), "decision": "reject"}
    assert admin.post("/console/grants", form).status_code == 403
    assert admin.post("/console/grants", {**form, "csrf": "forged"}).status_code == 403
    evil = {"Origin": "https://evil.example"}
    assert admin.post("/console/grants", {**form, "csrf": admin.csrf}, evil).status_code == 403
    assert grant_status(w, ids["grant_on_other"]) == "requested"
    # and the sign-in form needs its pre-session token too
    v = Visitor(w.url)
    r = v.post("/console/login", {"username": "admin", "password": PASSWORD})
    assert r.status_code == 403 and "dargah_console" not in v.cookies


def test_a_role_without_permission_gets_403(site: tuple[World, dict[str, Any]]) -> None:
    w, ids = site
    auditor = signed_in(w.url, "auditor")
    for path, form in (
        ("/console/members", {"action": "revoke", "id": w.member(OTHER_LEGAL_ID)}),
        ("/console/subsystem", {"action": "revoke", "id": ids["other_client"]}),
        ("/console/grants", {"id": str(ids["grant_on_other"]), "decision": "approve"}),
        ("/console/incident", {"id": "1", "action": "resolve", "text": "x"}),
    ):
        r = auditor.post(path, {**form, "csrf": auditor.csrf})
        assert r.status_code == 403 and "اجازه" in r.text, (path, r.status_code)
    agency = signed_in(w.url, "prov-admin")
    assert agency.get("/console/log?national_code=" + SUBJECT).status_code == 403
    r = agency.post("/console/members", {"action": "add", "csrf": agency.csrf})
    assert r.status_code == 403
    assert grant_status(w, ids["grant_on_other"]) == "requested"


def test_an_agency_admin_never_sees_or_changes_another_agencys_things(
    site: tuple[World, dict[str, Any]],
) -> None:
    w, ids = site
    other = signed_in(w.url, "other-admin")
    prov_member = w.member(PROVIDER_LEGAL_ID)
    for path in (
        f"/console/subsystem?id={ids['prov_client']}",
        f"/console/subsystems?member={prov_member}",
        f"/console/incident?id={ids['incident']}",
    ):
        r = other.get(path)
        assert r.status_code in (403, 404), (path, r.status_code)
        assert ids["prov_client"] not in r.text or r.status_code == 404
    for path in (
        "/console/subsystems",
        "/console/services",
        "/console/status",
        "/console/members",
        "/console/coverage",
        "/console/incidents",
    ):
        r = other.get(path)
        assert r.status_code == 200, path
        assert ids["prov_service"] not in r.text and f"{prov_member}/" not in r.text, path
        assert f'data-member="{prov_member}"' not in r.text, path
    # grants and audit entries: only those in which one side is its own
    cons = w.clients["cons"].id
    assert f'data-grant="{ids["grant_on_prov"]}"' not in other.get("/console/grants").text
    trail = other.get("/console/audit").text
    assert f"{cons} -&gt; {ids['prov_service']}" not in trail and f">{prov_member}<" not in trail
    assert f"{cons} -&gt; {ids['other_service']}" in trail
    assert "console-user:" not in trail
    # its own things are there
    assert ids["other_service"] in other.get("/console/services").text
    assert f'data-grant="{ids["grant_on_other"]}"' in other.get("/console/grants").text
    # the other agency's grant cannot be decided, by any parameter
    for decision in ("approve", "reject", "revoke"):
        form = {"id": str(ids["grant_on_prov"]), "decision": decision, "csrf": other.csrf}
        assert other.post("/console/grants", form).status_code == 403
    assert grant_status(w, ids["grant_on_prov"]) == "requested"
    # the provider's admin decides on its own service only
    prov = signed_in(w.url, "prov-admin")
    form = {"id": str(ids["grant_on_other"]), "decision": "approve", "csrf": prov.csrf}
    assert prov.post("/console/grants", form).status_code == 403
    assert grant_status(w, ids["grant_on_other"]) == "requested"


JUNK = [
    "id=%00",
    "id=../../etc/passwd",
    "id=" + "9" * 400,
    "id=-1",
    "member=DEV/GOV/00000000000",
    "minutes=abc",
    "minutes=99999",
    "state=closed",
    "status=%3Cscript%3E",
    "before=-5",
    "before=1e9",
    "national_code=1234567890",
    "national_code=%DB%B1%DB%B2",
    "since=yesterday",
    "until=2025-13-45",
    "client=a/b",
    "service=%27%20OR%201%3D1",
    "target=" + "x" * 1000,
    "outcome=%3Cb%3E",
]


def test_no_page_answers_500_to_junk_query_parameters(site: tuple[World, dict[str, Any]]) -> None:
    w, _ = site
    admin = signed_in(w.url, "admin")
    bad = []
    for path in _get_routes():
        for junk in JUNK:
            r = admin.get(f"{path}?{junk}")
            persian = '<html lang="fa" dir="rtl">' in r.text or 'id="status-panel"' in r.text
            if r.status_code >= 500 or not (persian or r.status_code == 303):
                bad.append((path, junk, r.status_code))
    assert bad == []


def test_posts_with_junk_fields_are_a_persian_400_not_a_500(
    site: tuple[World, dict[str, Any]],
) -> None:
    w, _ = site
    admin = signed_in(w.url, "admin")
    for path in _post_routes():
        if path in ("/console/login", "/console/logout"):
            continue
        for form in ({}, {"id": "x" * 500, "action": "??"}, {"id": "0", "decision": "maybe"}):
            r = admin.post(path, {**form, "csrf": admin.csrf})
            assert r.status_code == 400 and 'dir="rtl"' in r.text, (path, form, r.status_code)


def test_console_users_are_added_listed_and_deactivated_from_the_command_line(
    site: tuple[World, dict[str, Any]],
) -> None:
    w, _ = site
    home = str(w.settings.home)
    env = {**os.environ, "DARGAH_DATABASE_URL": w.settings.database_url}
    add = subprocess.run(
        [
            DARGAH,
            "console-user",
            "add",
            "cli-user",
            "--role",
            "agency-admin",
            "--member",
            w.member(PROVIDER_LEGAL_ID),
            "--password-stdin",
            "--home",
            home,
        ],
        input="a long enough password\n",
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert add.returncode == 0, add.stderr
    listed = subprocess.run(
        [DARGAH, "console-user", "list", "--home", home], capture_output=True, text=True, env=env
    )
    assert "cli-user" in listed.stdout and "password" not in listed.stdout
    v = Visitor(w.url)
    v.sign_in("cli-user", "a long enough password")
    assert v.get("/console/grants").status_code == 200
    off = subprocess.run(
        [DARGAH, "console-user", "deactivate", "cli-user", "--home", home],
        capture_output=True,
        text=True,
        env=env,
    )
    assert off.returncode == 0, off.stderr
    assert v.get("/console/grants").status_code == 303  # signed out at once
    assert v.sign_in("cli-user", "a long enough password").status_code == 401
    short = subprocess.run(
        [
            DARGAH,
            "console-user",
            "add",
            "x-user",
            "--role",
            "operator",
            "--password-stdin",
            "--home",
            home,
        ],
        input="short\n",
        capture_output=True,
        text=True,
        env=env,
    )
    assert short.returncode == 1 and "error" in short.stderr
    assert Path(home).exists()
