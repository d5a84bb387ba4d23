"""The registry's pages: members, subsystems with their keys, and bus services.

What a user sees and may change is decided by :mod:`dargah.console.web.policy`; the changes
themselves are the registry's functions (one transaction, audit entries included).
"""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response

from dargah.console.web import inputs, policy
from dargah.console.web.guard import Page, requires
from dargah.console.web.policy import ALL, OPERATOR
from dargah.core.errors import BadRequest
from dargah.registry import grants, members, services
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
    return page.render(
        "subsystems.html", subsystems=found, member=wanted, may_change=page.me.role == OPERATOR
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
        provided = services.list_services(conn, client)
    return page.render(
        "subsystem.html",
        sub=sub,
        keys=keys,
        services=provided,
        may_change=page.me.role == OPERATOR,
    )


@requires(OPERATOR)
def subsystem_change(page: Page) -> Response:
    action = inputs.choice(page.form, "action", ("add", "revoke", "revoke-key"))
    client = inputs.client_id(page.form)
    if client is None:
        raise BadRequest("id is required", "شناسه سامانه لازم است")
    user = page.me
    with page.engine.begin() as conn:
        if action == "add":
            members.add_subsystem(conn, client, user.actor, inputs.text(page.form, "name"))
        elif action == "revoke":
            members.revoke_subsystem(conn, client, user.actor)
        elif action == "revoke-key":
            members.revoke_key(
                conn, client, inputs.required(page.form, "kid", "کلید", 80), user.actor
            )
        else:
            raise BadRequest("action is required", "کار خواسته‌شده نامعتبر است")
    return RedirectResponse(f"/console/subsystem?id={client}", 303)


@requires(*ALL)
def service_list(page: Page) -> Response:
    with page.engine.connect() as conn:
        found = [s for s in services.list_services(conn) if policy.can_see(page.me, s["id"])]
        live: dict[str, int] = {}
        for g in grants.list_grants(conn, status="approved"):
            live[g["service_id"]] = live.get(g["service_id"], 0) + 1
    return page.render("services.html", services=found, grant_counts=live)


PAGES = [
    ("/console/members", member_list, False),
    ("/console/members", member_change, True),
    ("/console/subsystems", subsystem_list, False),
    ("/console/subsystem", subsystem_detail, False),
    ("/console/subsystem", subsystem_change, True),
    ("/console/services", service_list, False),
]
