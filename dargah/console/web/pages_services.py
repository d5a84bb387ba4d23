"""Bus services: the list, one service's form, registering, changing and removing a service.

The operator registers services for any member, an agency administrator for its own member
only (:func:`~dargah.console.web.policy.require_change`); every rule on the values (the base
URL, the timeout, the body limit, data item names, the OpenAPI document) is the registry's
(:mod:`dargah.registry.services`). The OpenAPI document is pasted or uploaded (JSON).
"""

from __future__ import annotations

import re
from typing import Any

from starlette.responses import RedirectResponse, Response

from dargah.console.web import inputs, policy
from dargah.console.web.guard import Page, requires
from dargah.console.web.policy import AGENCY_ADMIN, ALL, OPERATOR
from dargah.core.errors import BadRequest
from dargah.registry import grants, members, services

OPENAPI_BYTES = 2 * 1024 * 1024
_SPLIT = re.compile(r"[\s,،]+")


@requires(*ALL)
def service_list(page: Page) -> Response:
    with page.engine.connect() as conn:
        found = [s for s in services.list_services(conn) if policy.can_see(page.me, s["id"])]
        live: dict[str, int] = {}
        for g in grants.list_grants(conn, status="approved"):
            live[g["service_id"]] = live.get(g["service_id"], 0) + 1
        providers = [
            s["id"]
            for s in members.list_subsystems(conn, policy.scope(page.me))
            if s["status"] == "active" and policy.can_change(page.me, s["id"])
        ]
    return page.render(
        "services.html",
        services=found,
        grant_counts=live,
        providers=providers if policy.may_register(page.me) else [],
    )


def _blank(provider: str) -> dict[str, Any]:
    return {
        "id": "",
        "subsystem_id": provider,
        "title": "",
        "base_url": "",
        "personal_data": False,
        "timeout_s": services.DEFAULT_TIMEOUT_S,
        "max_body": services.DEFAULT_MAX_BODY,
        "maintenance": False,
        "supplies": [],
        "status": "active",
        "has_openapi": False,
    }


@requires(*ALL)
def service_form(page: Page) -> Response:
    """One service (``?id=``), or the form for a new one (``?provider=`` a subsystem)."""
    sid = inputs.service_id(page.query)
    if sid is not None:
        policy.require_visible(page.me, sid)
        with page.engine.connect() as conn:
            service = services.get_service(conn, sid)
        may_change = policy.can_change(page.me, sid)
    else:
        provider = inputs.client_id(page.query, "provider")
        if provider is None:
            raise BadRequest("id or provider is required", "خدمت یا سامانهٔ ارائه‌دهنده را بگویید")
        policy.require_change(page.me, provider)
        with page.engine.connect() as conn:
            members.get_subsystem(conn, provider)
        service, may_change = _blank(provider), True
    return page.render("service.html", s=service, may_change=may_change)


def _flag(form: dict[str, str], name: str) -> bool:
    return form.get(name) in ("1", "on", "true")


def _seconds(form: dict[str, str]) -> float:
    value = inputs.required(form, "timeout_s", "مهلت پاسخ", 20)
    try:
        return float(value)
    except ValueError as exc:
        raise BadRequest("timeout_s is not a number", "مهلت پاسخ باید عدد باشد") from exc


def _openapi(page: Page) -> str | None:
    """The pasted or uploaded OpenAPI document (the registry checks that it is a JSON object)."""
    upload = page.files.get("openapi_file")
    if upload is not None and upload[1].strip():
        if len(upload[1]) > OPENAPI_BYTES:
            raise BadRequest(
                "the OpenAPI document is too large", "سند OpenAPI بیش از ۲ مگابایت است"
            )
        try:
            return upload[1].decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise BadRequest("not UTF-8", "سند OpenAPI باید JSON با UTF-8 باشد") from exc
    return inputs.text(page.form, "openapi", 60_000)


def _values(page: Page) -> dict[str, Any]:
    form = page.form
    supplies = [s for s in _SPLIT.split(inputs.text(form, "supplies", 2000) or "") if s]
    return {
        "title": inputs.text(form, "title", 300),
        "base_url": inputs.required(form, "base_url", "نشانی پایه ارائه‌دهنده", 500),
        "personal_data": _flag(form, "personal_data"),
        "timeout_s": _seconds(form),
        "max_body": inputs.number(form, "max_body", 1, 1 << 30) or services.DEFAULT_MAX_BODY,
        "supplies": supplies,
    }


@requires(OPERATOR, AGENCY_ADMIN)
def service_change(page: Page) -> Response:
    action = inputs.choice(page.form, "action", ("add", "update", "remove"))
    if action is None:
        raise BadRequest("action is required", "کار خواسته‌شده نامعتبر است")
    user = page.me
    if action == "add":
        provider = inputs.client_id(page.form, "provider")
        code = inputs.required(page.form, "code", "کد خدمت", 80)
        sid = inputs.service_id({"id": f"{provider}/{code}"}) if provider else None
    else:
        sid = inputs.service_id(page.form)
    if sid is None:
        raise BadRequest("id is required", "شناسه خدمت لازم است")
    policy.require_change(user, sid)
    with page.engine.begin() as conn:
        if action == "remove":
            services.remove_service(conn, sid, user.actor)
        elif action == "add":
            values = _values(page)
            services.add_service(
                conn,
                sid,
                values.pop("base_url"),
                user.actor,
                openapi=_openapi(page),
                settings=getattr(page.state, "settings", None),
                **values,
            )
        else:
            values = _values(page)
            values["maintenance"] = _flag(page.form, "maintenance")
            document = _openapi(page)
            if document is not None:
                values["openapi"] = document
            if values["title"] is None:
                values.pop("title")
            services.update_service(
                conn, sid, values, user.actor, getattr(page.state, "settings", None)
            )
    return RedirectResponse(f"/console/service?id={sid}", 303)


PAGES = [
    ("/console/services", service_list, False),
    ("/console/service", service_form, False),
    ("/console/service", service_change, True),
]
UPLOADS = {("/console/service", True): OPENAPI_BYTES + 128 * 1024}
