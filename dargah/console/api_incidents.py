"""Following problems up: incidents with their timeline, owner, notes and resolution."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query

from dargah.console.api_deps import EngineDep, Operator, problems, reading, writing
from dargah.registry import incidents
from dargah.registry.incident_impact import impact

router = APIRouter()
IncidentId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The incident's number.")]
Text = Annotated[str, Body(embed=True, min_length=1, max_length=4000)]
_PROBLEMS = problems({404: "No such incident.", 409: "Already resolved."})


@router.get("/incidents", tags=["incidents"], name="list_incidents", responses=problems({}))
def list_all(
    engine: EngineDep,
    _caller: Operator,
    state: Annotated[Literal["open", "resolved"] | None, Query()] = None,
) -> list[dict[str, Any]]:
    """Incidents, newest first: one per failing provider host, opened by the monitor when the
    failure persists, resolved by it after a sustained recovery (or by hand)."""
    with reading(engine) as conn:
        return incidents.list_incidents(conn, state)


@router.get(
    "/incidents/{incident_id}", tags=["incidents"], name="get_incident", responses=_PROBLEMS
)
def get_one(incident_id: IncidentId, engine: EngineDep, _caller: Operator) -> dict[str, Any]:
    """One incident with its timeline, its outages, and its impact: the public services whose
    data sources or submission service it takes down, citizens' requests to them that failed
    since it started, and applications waiting at them."""
    with reading(engine) as conn:
        found = incidents.get_incident(conn, incident_id)
        found["impact"] = impact(conn, found)
        return found


@router.post(
    "/incidents/{incident_id}/notes",
    tags=["incidents"],
    name="add_incident_note",
    responses=_PROBLEMS,
)
def note(
    incident_id: IncidentId, text: Text, engine: EngineDep, caller: Operator
) -> dict[str, Any]:
    """Add a note to the timeline."""
    with writing(engine) as conn:
        return incidents.add_note(conn, incident_id, caller.actor, text)


@router.post(
    "/incidents/{incident_id}/owner",
    tags=["incidents"],
    name="set_incident_owner",
    responses=_PROBLEMS,
)
def owner(
    incident_id: IncidentId,
    owner: Annotated[str, Body(embed=True, min_length=1, max_length=200)],
    engine: EngineDep,
    caller: Operator,
) -> dict[str, Any]:
    """Give the incident an owner."""
    with writing(engine) as conn:
        return incidents.set_owner(conn, incident_id, caller.actor, owner)


@router.post(
    "/incidents/{incident_id}/resolve",
    tags=["incidents"],
    name="resolve_incident",
    responses=_PROBLEMS,
)
def resolve(
    incident_id: IncidentId, resolution: Text, engine: EngineDep, caller: Operator
) -> dict[str, Any]:
    """Close the incident with its resolution."""
    with writing(engine) as conn:
        return incidents.resolve(conn, incident_id, caller.actor, resolution)
