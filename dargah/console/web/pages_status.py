"""Seeing problems at once: the status of every agency and service, and the incidents."""

from __future__ import annotations

import time
from typing import Any

from starlette.responses import RedirectResponse, Response

from dargah.bus import slo
from dargah.bus.status import LATENCY_OBJECTIVE_MS, service_status
from dargah.console.web import inputs, policy
from dargah.console.web.guard import Page, requires
from dargah.console.web.policy import ALL, OPERATOR
from dargah.core.errors import BadRequest
from dargah.registry import incidents
from dargah.registry.incident_impact import impact

MINUTES = ("5", "15", "60", "1440")
KIND_FA = {
    "opened": "گشایش",
    "updated": "به‌روزرسانی",
    "reopened": "گشایش دوباره",
    "resolved": "بسته شد",
    "alert": "هشدار",
    "note": "یادداشت",
    "owner": "مسئول",
    "recovered": "بازگشت",
    "failing": "خطای دوباره",
}
STATE_FA = {"up": "برقرار", "degraded": "کُند یا ناپایدار", "down": "قطع"}
_ORDER = {"down": 2, "degraded": 1, "up": 0}


def _visible(user: Any, incident: dict[str, Any]) -> bool:
    return any(policy.can_see(user, s) for s in incident["services"])


def _status(page: Page) -> dict[str, Any]:
    minutes = int(inputs.choice(page.query, "minutes", MINUTES) or "5")
    health = getattr(page.state, "health", None)
    settings = getattr(page.state, "settings", None)
    defaults = (
        slo.default_objective(settings)
        if settings is not None
        else slo.Objective(99.5, LATENCY_OBJECTIVE_MS, 95.0)
    )
    user = page.me
    with page.engine.connect() as conn:
        objs = slo.objectives(conn, defaults)
        entries = service_status(
            conn,
            minutes,
            health.results if health is not None else None,
            latency={sid: (o.latency_percent, o.latency_ms) for sid, o in objs.items()},
            default_latency=(defaults.latency_percent, defaults.latency_ms),
        )
        reports = slo.reports(conn, [e["service"] for e in entries], defaults, time.time())
        open_incidents = [i for i in incidents.list_incidents(conn, "open") if _visible(user, i)]
    agencies: dict[str, dict[str, Any]] = {}
    for e in entries:
        if not policy.can_see(user, e["service"]):
            continue
        a = agencies.setdefault(
            e["agency"],
            {"agency": e["agency"], "name": e["agency_name"], "state": "up", "services": []},
        )
        e["slo"] = reports[e["service"]]
        a["services"].append(e)
        if _ORDER[e["state"]] > _ORDER[a["state"]]:
            a["state"] = e["state"]
    return {
        "minutes": minutes,
        "minute_choices": MINUTES,
        "probes": health is not None,
        "agencies": list(agencies.values()),
        "incidents": open_incidents,
        "objective": defaults,
        "state_fa": STATE_FA,
    }


@requires(*ALL)
def status(page: Page) -> Response:
    return page.render("status.html", **_status(page))


@requires(*ALL)
def status_panel(page: Page) -> Response:
    return page.render("status_panel.html", **_status(page))


@requires(*ALL)
def incident_list(page: Page) -> Response:
    state = inputs.choice(page.query, "state", ("open", "resolved"))
    with page.engine.connect() as conn:
        found = [i for i in incidents.list_incidents(conn, state) if _visible(page.me, i)]
    return page.render("incidents.html", incidents=found, state=state)


def _incident(page: Page, source: Any) -> dict[str, Any]:
    number = inputs.number(source, "id", 1, 2**31 - 1)
    if number is None:
        raise BadRequest("id is required", "شماره رخداد لازم است")
    with page.engine.connect() as conn:
        found = incidents.get_incident(conn, number)
        if not _visible(page.me, found):
            policy.require_visible(page.me, found["service_id"])
        found["impact"] = impact(conn, found)
    return found


@requires(*ALL)
def incident_detail(page: Page) -> Response:
    found = _incident(page, page.query)
    return page.render(
        "incident.html",
        kind_fa=KIND_FA,
        incident=found,
        may_note=policy.can_note_incident(page.me, found),
        may_manage=page.me.role == OPERATOR,
    )


@requires(*ALL)
def incident_action(page: Page) -> Response:
    found = _incident(page, page.form)
    action = inputs.choice(page.form, "action", ("note", "owner", "resolve"))
    user = page.me
    with page.engine.begin() as conn:
        if action == "note":
            if not policy.can_note_incident(user, found):
                policy.require_operator(user)
            incidents.add_note(
                conn, found["id"], user.actor, inputs.required(page.form, "text", "یادداشت")
            )
        elif action == "owner":
            policy.require_operator(user)
            incidents.set_owner(
                conn, found["id"], user.actor, inputs.required(page.form, "owner", "مسئول", 200)
            )
        elif action == "resolve":
            policy.require_operator(user)
            incidents.resolve(
                conn, found["id"], user.actor, inputs.required(page.form, "text", "شرح رفع مشکل")
            )
        else:
            raise BadRequest("action is required", "کار خواسته‌شده نامعتبر است")
    return RedirectResponse(f"/console/incident?id={found['id']}", 303)


PAGES = [
    ("/console/status", status, False),
    ("/console/status/panel", status_panel, False),
    ("/console/incidents", incident_list, False),
    ("/console/incident", incident_detail, False),
    ("/console/incident", incident_action, True),
]
