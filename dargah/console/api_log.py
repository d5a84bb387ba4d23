"""Following a call up: the message-log search (``GET /api/v1/log``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from dargah.bus.log.search import MAX_LIMIT, LogQuery, search_log
from dargah.console.api_deps import EngineDep, Operator, problems, reading
from dargah.console.schemas import CLIENT_ID_PATTERN, SERVICE_ID_PATTERN
from dargah.core.errors import BadRequest
from dargah.core.identifiers import is_national_code
from dargah.registry.instance import subject_ref

router = APIRouter()


@router.get(
    "/log",
    tags=["message log"],
    name="search_log",
    responses=problems({}),
    summary="Search the message log",
    description=(
        "Records newest first, each with its chain position and the seal that covers it. "
        "A citizen is searched by national code, which is turned into the log's `subject_ref` "
        "(the log never holds the code itself). Page back with `before` = the last `seq` seen."
    ),
)
def search(
    engine: EngineDep,
    _caller: Operator,
    request_id: Annotated[str | None, Query(max_length=64)] = None,
    client: Annotated[str | None, Query(max_length=120, pattern=CLIENT_ID_PATTERN)] = None,
    service: Annotated[str | None, Query(max_length=200, pattern=SERVICE_ID_PATTERN)] = None,
    outcome: Annotated[str | None, Query(max_length=40, pattern=r"^[a-z-]+$")] = None,
    national_code: Annotated[str | None, Query(max_length=10, pattern=r"^[0-9]{10}$")] = None,
    since: Annotated[datetime | None, Query(description="From this time (RFC 3339).")] = None,
    until: Annotated[datetime | None, Query(description="Before this time (RFC 3339).")] = None,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> dict[str, Any]:
    with reading(engine) as conn:
        ref = None
        if national_code is not None:
            if not is_national_code(national_code):
                raise BadRequest("national_code fails the checksum", "کد ملی معتبر نیست")
            ref = subject_ref(conn, national_code)
        rows = search_log(
            conn,
            LogQuery(
                request_id=request_id,
                client=client,
                service=service,
                outcome=outcome,
                subject_ref=ref,
                since=since,
                until=until,
                before=before,
                limit=limit,
            ),
        )
    return {"records": rows, "next_before": rows[-1]["seq"] if len(rows) >= limit else None}
