"""Seeing problems at once: ``GET /api/v1/status``, every bus service's state and objectives.

Also each service's objectives: ``GET /api/v1/objectives`` (budget left and burn rates of
every active service), ``PUT`` / ``DELETE /api/v1/services/{id}/objectives`` to set a
service's own objectives or go back to the defaults.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from dargah.bus import slo
from dargah.bus.status import service_status
from dargah.console.api_deps import (
    ID_NOTE,
    SERVICE_PATH,
    EngineDep,
    Operator,
    ServiceId,
    problems,
    reading,
    writing,
)
from dargah.registry import objectives
from dargah.store.tables import services

router = APIRouter()


class ObjectiveIn(BaseModel):
    availability: float = Field(
        ge=50, lt=100, description="Percent of forwarded calls that must not fail."
    )
    latency_ms: float = Field(ge=1, le=600_000, description="Latency objective, milliseconds.")
    latency_percent: float = Field(
        ge=50, lt=100, description="Percent of forwarded calls within latency_ms."
    )


def _defaults(request: Request) -> slo.Objective:
    return slo.default_objective(request.app.state.settings)


@router.get(
    "/status",
    tags=["status"],
    name="status",
    responses=problems({}),
    summary="The state of every bus service",
    description=(
        "Per service: up, degraded or down, from the last `minutes` of traffic (calls, provider "
        "failures, error rate, latency percentiles) and the latest active health probe of its "
        "provider; and `slo`: its objectives, the error budget left over 30 days and the burn "
        "rates over 1 hour and 5 minutes. Grouped by agency."
    ),
)
def status(
    request: Request,
    engine: EngineDep,
    _caller: Operator,
    minutes: Annotated[int, Query(ge=1, le=1440)] = 5,
) -> dict[str, Any]:
    health = getattr(request.app.state, "health", None)
    defaults = _defaults(request)
    with reading(engine) as conn:
        objs = slo.objectives(conn, defaults)
        entries = service_status(
            conn,
            minutes,
            health.results if health is not None else None,
            latency={sid: (o.latency_percent, o.latency_ms) for sid, o in objs.items()},
            default_latency=(defaults.latency_percent, defaults.latency_ms),
        )
        reports = slo.reports(conn, [e["service"] for e in entries], defaults, time.time())
    agencies: dict[str, dict[str, Any]] = {}
    order = {"down": 2, "degraded": 1, "up": 0}
    for e in entries:
        e["slo"] = reports[e["service"]]
        a = agencies.setdefault(
            e["agency"],
            {"agency": e["agency"], "name": e["agency_name"], "state": "up", "services": []},
        )
        a["services"].append(e)
        if order[e["state"]] > order[a["state"]]:
            a["state"] = e["state"]
    return {"minutes": minutes, "probes": health is not None, "agencies": list(agencies.values())}


@router.get(
    "/objectives",
    tags=["status"],
    name="list_objectives",
    responses=problems({}),
    summary="Every active bus service's objectives, error budget left and burn rates",
)
def list_objectives(request: Request, engine: EngineDep, _caller: Operator) -> dict[str, Any]:
    defaults = _defaults(request)
    with reading(engine) as conn:
        ids = [
            r.id
            for r in conn.execute(
                services.select().where(services.c.status == "active").order_by(services.c.id)
            )
        ]
        reports = slo.reports(conn, ids, defaults, time.time())
    return {
        "defaults": {
            "availability": defaults.availability,
            "latency_ms": defaults.latency_ms,
            "latency_percent": defaults.latency_percent,
        },
        "services": [{"service": sid, **reports[sid]} for sid in ids],
    }


@router.put(
    SERVICE_PATH + "/objectives",
    tags=["status"],
    name="set_objectives",
    description=ID_NOTE,
    responses=problems({404: "No such service."}),
)
def set_objectives(
    service: ServiceId, body: ObjectiveIn, request: Request, engine: EngineDep, caller: Operator
) -> dict[str, Any]:
    """Set a service's own objectives; returns its report under them."""
    with writing(engine) as conn:
        objectives.set_objective(
            conn, service, body.availability, body.latency_ms, body.latency_percent, caller.actor
        )
        return slo.reports(conn, [service], _defaults(request), time.time())[service]


@router.delete(
    SERVICE_PATH + "/objectives",
    tags=["status"],
    name="clear_objectives",
    description=ID_NOTE,
    responses=problems({404: "No such service, or it has no objectives of its own."}),
)
def clear_objectives(
    service: ServiceId, request: Request, engine: EngineDep, caller: Operator
) -> dict[str, Any]:
    """Drop a service's own objectives: the defaults hold again."""
    with writing(engine) as conn:
        objectives.clear_objective(conn, service, caller.actor)
        return slo.reports(conn, [service], _defaults(request), time.time())[service]
