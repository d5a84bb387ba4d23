"""Every console page states its authentication, and accounts behave alike on every database."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.responses import Response
from starlette.routing import Route

from dargah.console.web import policy
from dargah.console.web.accounts import (
    ConsoleUser,
    SignInRefused,
    add_user,
    ensure_user,
    recent_failures,
    sign_in,
)
from dargah.console.web.app import build_console
from dargah.console.web.guard import Page, declared_access, page_route, public, requires
from dargah.core.errors import BadRequest
from dargah.core.settings import Settings
from dargah.registry import members
from dargah.registry.instance import open_instance


def test_every_console_route_declares_its_authentication() -> None:
    app = build_console(engine=None)  # type: ignore[arg-type]
    routes = [r for r in app.routes if isinstance(r, Route)]
    assert len(routes) >= 20
    undeclared = [r.path for r in routes if declared_access(r) is None]
    assert undeclared == []
    public_ones = {r.path for r in routes if declared_access(r).public_reason}  # type: ignore[union-attr]
    assert public_ones == {"/console/login"}
    for r in routes:
        access = declared_access(r)
        assert access is not None and (access.roles or access.public_reason)


def test_a_page_without_a_declaration_cannot_be_routed() -> None:
    def forgotten(page: Page) -> Response:
        return Response("secret")

    with pytest.raises(TypeError, match="requires"):
        page_route("/console/forgotten", forgotten, None, None, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        requires()
    assert declared_access(page_route("/console/x", public("r")(forgotten), None, None, None))  # type: ignore[arg-type]


def test_the_policy_keeps_agency_admins_to_their_own_member() -> None:
    mine = ConsoleUser("a", "agency-admin", "DEV/GOV/10100387143", None)
    operator = ConsoleUser("o", "operator", None, None)
    auditor = ConsoleUser("u", "auditor", None, None)
    own = {"id": 1, "client_id": "DEV/GOV/14003000014/c", "service_id": "DEV/GOV/10100387143/s/x"}
    theirs = {
        "id": 2,
        "client_id": "DEV/GOV/10100387143/c",
        "service_id": "DEV/GOV/14007650912/s/y",
    }
    assert policy.can_decide(mine, own, "approve") and not policy.can_decide(
        mine, theirs, "approve"
    )
    assert policy.can_see_grant(mine, theirs)  # its own request, decided by the other agency
    assert not policy.can_see(mine, "DEV/GOV/14007650912/s")
    assert not policy.can_see(mine, "DEV/GOV/101003871430/s")  # a longer id is not a prefix match
    assert policy.can_decide(operator, theirs, "revoke")
    assert not any(policy.can_decide(auditor, own, d) for d in ("approve", "reject", "revoke"))


def test_sign_in_failures_are_counted_in_the_database(tmp_path: Path, database_url: str) -> None:
    engine, info, _ = open_instance(Settings(home=tmp_path, database_url=database_url))
    member = f"{info.code}/GOV/10100387143"
    with engine.begin() as conn:
        members.add_member(conn, member, "ثبت", "test")
        add_user(conn, "agency", "a good password", "agency-admin", "t", member_id=member)
        with pytest.raises(BadRequest):
            add_user(conn, "Bad Name", "a good password", "auditor", "t")
        with pytest.raises(BadRequest):
            add_user(conn, "nomember", "a good password", "agency-admin", "t")
    user = sign_in(engine, "agency", "a good password", "test")
    assert user.member_id == member and user.role == "agency-admin"
    for _ in range(5):
        with pytest.raises(SignInRefused):
            sign_in(engine, "agency", "wrong", "test")
    with engine.connect() as conn:
        assert recent_failures(conn, "agency") == 5
    with pytest.raises(SignInRefused) as refused:
        sign_in(engine, "agency", "a good password", "test")
    assert refused.value.locked
    engine.dispose()


def test_the_demo_admin_account_follows_the_password_in_demo_json(tmp_path: Path) -> None:
    engine, _info, _ = open_instance(Settings(home=tmp_path))
    ensure_user(engine, "admin", "first password", "operator", "sandbox:provision")
    assert sign_in(engine, "admin", "first password", "test").role == "operator"
    ensure_user(engine, "admin", "second password", "operator", "sandbox:provision")
    assert sign_in(engine, "admin", "second password", "test").username == "admin"
    engine.dispose()
