"""Agencies' own figures and oversight's measurements over the management API.

- ``PUT /public-services/{service_id}/reports/{period}``: an agency's REPORT (catalogue.md)
  for one public service and period; ``201`` when new, ``200`` when it replaced one.
- ``GET /public-services/{service_id}/reports``: a service's reports.
- ``GET /oversight/kpis``: the four KPIs measured and reported, national and per agency.
- ``POST``/``GET /oversight/unasserted-calls``: a provider's report of calls that reached its
  bus service without a valid ``GSB-Assertion`` (evidence of a connection outside the bus).
- ``GET /oversight/violations``: once-only, direct-connection and unasserted-call findings.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from dargah.console.api_deps import EngineDep, Operator, problems, reading, writing
from dargah.core.clock import utc_now
from dargah.oversight import violations
from dargah.oversight.overview import build_overview
from dargah.registry.catalogue import reports

router = APIRouter()
PublicServiceId = Annotated[
    str, Path(pattern=r"^[0-9]{11}$", description="The public service's 11-digit ID.")
]
Period = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=r"^[^/\x00-\x1f]+$",
        description="The agency's label of the period, e.g. 1403 or 1403-Q2.",
    ),
]
Count = Annotated[int | None, Field(ge=0, le=10**15)]


class ReportIn(BaseModel):
    """A REPORT without its period (the period is in the path); every field may be null."""

    model_config = ConfigDict(extra="forbid")

    applications_online: Count = None
    applications_in_person: Count = None
    applications_other: Count = None
    completed: Count = None
    completed_online: Count = None
    started: Count = None
    cost_total_rials: Count = None
    cost_per_transaction_rials: Count = None
    satisfaction_pct: Annotated[float | None, Field(ge=0, le=100, allow_inf_nan=False)] = None


class UnassertedIn(BaseModel):
    """Calls a provider received on a bus service without a valid ``GSB-Assertion``."""

    model_config = ConfigDict(extra="forbid")

    service: Annotated[
        str,
        Field(
            min_length=3, max_length=200, examples=["DEV/GOV/10100387143/sabt/person-inquiry.v1"]
        ),
    ]
    calls: Annotated[int, Field(ge=1, le=10**12)]
    first_seen: Annotated[str | None, Field(max_length=40)] = None
    last_seen: Annotated[str | None, Field(max_length=40)] = None
    source: Annotated[
        str | None,
        Field(max_length=200, description="The caller, if known (an address or a client id)."),
    ] = None
    note: Annotated[str | None, Field(max_length=2000)] = None


@router.put(
    "/public-services/{service_id}/reports/{period}",
    tags=["oversight"],
    name="put_public_service_report",
    responses=problems({201: "A new period's report.", 404: "No such public service."}),
)
def put_report(
    service_id: PublicServiceId,
    period: Period,
    body: ReportIn,
    response: Response,
    engine: EngineDep,
    caller: Operator,
) -> dict[str, Any]:
    """Store an agency's own figures for one public service and period (replacing that period's)."""
    with writing(engine) as conn:
        stored, new = reports.put_report(conn, service_id, period, body.model_dump(), caller.actor)
    response.status_code = 201 if new else 200
    return stored


@router.get(
    "/public-services/{service_id}/reports",
    tags=["oversight"],
    name="list_public_service_reports",
    responses=problems({404: "No such public service."}),
)
def list_reports(
    service_id: PublicServiceId, engine: EngineDep, _caller: Operator
) -> list[dict[str, Any]]:
    """A public service's reports, in the agency's order."""
    with reading(engine) as conn:
        return reports.list_reports(conn, service_id)


@router.get("/oversight/kpis", tags=["oversight"], name="get_kpis", responses=problems({}))
def kpis(
    engine: EngineDep,
    _caller: Operator,
    period: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """The four KPIs measured and reported, with the gap: national and per agency."""
    with reading(engine) as conn:
        ov = build_overview(conn, utc_now(), period=period)
    return {
        "window": ov.window_dict(),
        "nation": ov.kpis(None),
        "agencies": [
            {"member_id": a["member_id"], "name": a["name"], "kpis": ov.kpis(a["member_id"])}
            for a in ov.agencies()
        ],
    }


@router.post(
    "/oversight/unasserted-calls",
    status_code=201,
    tags=["oversight"],
    name="report_unasserted_calls",
    responses=problems({404: "No such bus service."}),
)
def report_unasserted(body: UnassertedIn, engine: EngineDep, caller: Operator) -> dict[str, Any]:
    """A provider reports calls its bus service received without a valid ``GSB-Assertion``."""
    with writing(engine) as conn:
        return violations.report_unasserted(conn, caller.actor, **body.model_dump())


@router.get(
    "/oversight/unasserted-calls",
    tags=["oversight"],
    name="list_unasserted_calls",
    responses=problems({}),
)
def list_unasserted(engine: EngineDep, _caller: Operator) -> list[dict[str, Any]]:
    """Every report of calls without a valid ``GSB-Assertion``, newest first."""
    with reading(engine) as conn:
        return violations.unasserted_reports(conn)


@router.get(
    "/oversight/violations", tags=["oversight"], name="list_violations", responses=problems({})
)
def list_violations(engine: EngineDep, _caller: Operator) -> list[dict[str, Any]]:
    """Every finding: once-only, direct connection, calls without a valid assertion."""
    with reading(engine) as conn:
        return [f.as_dict() for f in violations.find_all(conn)]
