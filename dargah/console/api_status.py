"""Seeing problems at once: ``GET /api/v1/status``, every bus service's state right now."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from dargah.bus.status import LATENCY_OBJECTIVE_MS, service_status
from dargah.console.api_deps import EngineDep, Operator, problems, reading

router = APIRouter()


@router.get(
    "/status",
    tags=["status"],
    name="status",
    responses=problems({}),
    summary="The state of every bus service",
    description=(
        "Per service: up, degraded or down, from the last `minutes` of traffic (calls, provider "
        f"failures, error rate, latency percentiles; objective p95 ≤ {LATENCY_OBJECTIVE_MS:g} ms) "
        "and the latest active health probe of its provider. Grouped by agency."
    ),
)
def status(
    request: Request,
    engine: EngineDep,
    _caller: Operator,
    minutes: Annotated[int, Query(ge=1, le=1440)] = 5,
) -> dict[str, Any]:
    health = getattr(request.app.state, "health", None)
    with reading(engine) as conn:
        entries = service_status(conn, minutes, health.results if health is not None else None)
    agencies: dict[str, dict[str, Any]] = {}
    order = {"down": 2, "degraded": 1, "up": 0}
    for e in entries:
        a = agencies.setdefault(
            e["agency"],
            {"agency": e["agency"], "name": e["agency_name"], "state": "up", "services": []},
        )
        a["services"].append(e)
        if order[e["state"]] > order[a["state"]]:
            a["state"] = e["state"]
    return {"minutes": minutes, "probes": health is not None, "agencies": list(agencies.values())}
