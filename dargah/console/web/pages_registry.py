"""The registry's pages: members, and subsystems with their keys and TLS certificates.

What a user sees and may change is decided by :mod:`dargah.console.web.policy`; the changes
themselves are the registry's functions (one transaction, audit entries included). A key is
pasted as a public JWK (JSON); rotating a key registers the new one and revokes the old one in
one transaction.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import RedirectResponse, Response

from dargah.console.web import inputs, policy
from dargah.console.web.guard import Page, requires
from dargah.console.web.policy import AGENCY_ADMIN, ALL, OPERATOR
from dargah.core.errors import BadRequest
from dargah.registry import certs, members, services
from dargah.registry.instance import instance_info

CLASSES = ("GOV", "PUB", "COM", "NGO")


@requires(*ALL)
def member_list(page: Page) -> Response:
    mine = policy.scope(page.me)
    with page.engine.connect() as conn:
        found = [m for m in members.list_members(conn) if mine is None or m["id"] == mine]
        instance = instance_info(conn).code
    return page.render(
        "members.html",
        members=found,
        may_change=page.me.role == OPERATOR,
        instance=instance,
        classes=CLASSES,
    )


@requires(OPERATOR)
def member_change(page: Page) -> Response:
    action = inputs.choice(page.form, "action", ("add", "revoke", "activate"))
    user = page.me
    with page.engine.begin() as conn:
        if action == "add":
            cls = inputs.choice(page.form, "member_class", CLASSES) or "GOV"
            legal_id = inputs.required(page.form, "legal_id", "شناسه ملی", 11)
            mid = inputs.member_id({"id": f"{instance_info(conn).code}/{cls}/{legal_id}"}) or ""
            members.add_member(
                conn, mid, inputs.required(page.form, "name", "نام", 300), user.actor
            )
        elif action in ("revoke", "activate"):
            mid = inputs.member_id(page.form) or ""
            members.set_member_status(
                conn, mid, "revoked" if action == "revoke" else "active", user.actor
            )
        else:
            raise BadRequest("action is required", "کار خواسته‌شده نامعتبر است")
    return RedirectResponse("/console/members", 303)


@requires(*ALL)
def subsystem_list(page: Page) -> Response:
    mine = policy.scope(page.me)
    wanted = inputs.member_id(page.query, "member")
    if wanted is not None:
        policy.require_visible(page.me, wanted)
    with page.engine.connect() as conn:
        found = members.list_subsystems(conn, wanted or mine)
        owners = [m["id"] for m in members.list_members(conn) if m["status"] == "active"]
    owners = [m for m in owners if policy.can_change(page.me, m)]
    return page.render(
        "subsystems.html",
        subsystems=found,
        member=wanted,
        may_change=policy.may_register(page.me),
        owners=owners,
        chosen=wanted or mine or "",
    )


@requires(*ALL)
def subsystem_detail(page: Page) -> Response:
    client = inputs.client_id(page.query)
    if client is None:
        raise BadRequest("id is required", "شناسه سامانه لازم است")
    policy.require_visible(page.me, client)
    with page.engine.connect() as conn:
        sub = members.get_subsystem(conn, client)
        keys = members.list_keys(conn, client)
        certificates = certs.list_certificates(conn, client)
        provided = services.list_services(conn, client)
    return page.render(
        "subsystem.html",
        sub=sub,
        keys=keys,
        certificates=certificates,
        services=provided,
        may_change=policy.can_change(page.me, client),
    )


def _jwk(form: dict[str, str]) -> dict[str, Any]:
    text = inputs.required(form, "jwk", "کلید عمومی (JWK)", 4000)
    try:
        jwk = json.loads(text)
    except ValueError as exc:
        raise BadRequest(
            "the key is not JSON", 'کلید باید JWK به شکل JSON باشد، مانند {"kty": "OKP", …}'
        ) from exc
    if not isinstance(jwk, dict):
        raise BadRequest("the key is not a JSON object", "کلید باید یک شیء JSON باشد")
    return jwk


def _new_client(form: dict[str, str]) -> str | None:
    """A new subsystem's id: ``id`` whole, or ``member`` and ``code``."""
    if inputs.text(form, "code", 80):
        member = inputs.member_id(form, "member") or ""
        return inputs.client_id({"id": f"{member}/{inputs.text(form, 'code', 80)}"})
    return inputs.client_id(form)


@requires(OPERATOR, AGENCY_ADMIN)
def subsystem_change(page: Page) -> Response:
    action = inputs.choice(
        page.form,
        "action",
        ("add", "revoke", "add-key", "rotate-key", "revoke-key", "add-cert", "revoke-cert"),
    )
    if action is None:
        raise BadRequest("action is required", "کار خواسته‌شده نامعتبر است")
    client = _new_client(page.form) if action == "add" else inputs.client_id(page.form)
    if client is None:
        raise BadRequest("id is required", "شناسه سامانه لازم است")
    user = page.me
    policy.require_change(user, client)
    with page.engine.begin() as conn:
        if action == "add":
            members.add_subsystem(conn, client, user.actor, inputs.text(page.form, "name"))
        elif action == "revoke":
            members.revoke_subsystem(conn, client, user.actor)
        elif action == "add-key":
            members.add_key(conn, client, _jwk(page.form), user.actor)
        elif action == "add-cert":
            text = inputs.required(page.form, "pem", "گواهی", 16_384).strip()
            if "BEGIN" in text:
                certs.add_certificate(conn, client, user.actor, pem=text)
            else:
                certs.add_certificate(conn, client, user.actor, thumbprint=text)
        elif action == "revoke-cert":
            thumbprint = inputs.required(page.form, "thumbprint", "گواهی", 64)
            certs.revoke_certificate(conn, client, thumbprint, user.actor)
        else:
            kid = inputs.required(page.form, "kid", "کلید", 80)
            if action == "rotate-key":
                members.rotate_key(conn, client, kid, _jwk(page.form), user.actor)
            else:
                members.revoke_key(conn, client, kid, user.actor)
    return RedirectResponse(f"/console/subsystem?id={client}", 303)


PAGES = [
    ("/console/members", member_list, False),
    ("/console/members", member_change, True),
    ("/console/subsystems", subsystem_list, False),
    ("/console/subsystem", subsystem_detail, False),
    ("/console/subsystem", subsystem_change, True),
]
