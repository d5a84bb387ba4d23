"""Grants (request, approve or reject, revoke), quotas, the audit trail and the instance."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query

from dargah.console.api_deps import EngineDep, GrantId, Operator, problems, reading, writing
from dargah.console.schemas import (
    CLIENT_ID_PATTERN,
    SERVICE_ID_PATTERN,
    AuditEntry,
    Decision,
    Grant,
    GrantIn,
    GrantStatus,
    Instance,
    Quota,
    QuotaIn,
)
from dargah.registry import audit, grants, quotas
from dargah.registry.instance import instance_info

router = APIRouter()
ClientFilter = Annotated[
    str | None,
    Query(max_length=120, pattern=CLIENT_ID_PATTERN, description="Only this client's (client id)."),
]
ServiceFilter = Annotated[
    str | None,
    Query(
        max_length=200, pattern=SERVICE_ID_PATTERN, description="Only this service's (service id)."
    ),
]
StatusFilter = Annotated[GrantStatus | None, Query(description="Only grants in this status.")]
OptionalDecision = Annotated[Decision | None, Body(description="An optional reason.")]
_GRANT_PROBLEMS = problems(
    {404: "No such grant.", 409: "The grant's status does not allow this decision."}
)


@router.get("/grants", tags=["grants"], name="list_grants")
def list_grants(
    engine: EngineDep,
    _caller: Operator,
    client: ClientFilter = None,
    service: ServiceFilter = None,
    status: StatusFilter = None,
) -> list[Grant]:
    """Grants and requests, oldest first."""
    with reading(engine) as conn:
        return [Grant(**g) for g in grants.list_grants(conn, client, service, status)]


@router.post(
    "/grants",
    status_code=201,
    tags=["grants"],
    name="request_grant",
    responses=problems(
        {
            404: "No such client or service.",
            409: "A request or grant for this client and service is live.",
        }
    ),
)
def request_grant(body: GrantIn, engine: EngineDep, caller: Operator) -> Grant:
    """A consumer's request for access (status `requested`), for the provider to decide.
    With `"approve": true` it is the operator's direct grant, approved at once (and it
    replaces the purposes of a live grant)."""
    with writing(engine) as conn:
        return Grant(
            **grants.request_grant(
                conn,
                body.client_id,
                body.service_id,
                body.purposes,
                caller.actor,
                approve=body.approve,
            )
        )


@router.get(
    "/grants/{grant_id}",
    tags=["grants"],
    name="get_grant",
    responses=problems({404: "No such grant."}),
)
def get_grant(grant_id: GrantId, engine: EngineDep, _caller: Operator) -> Grant:
    with reading(engine) as conn:
        row = grants.get_grant(conn, grant_id)
    return Grant(**row)


def _decide(
    engine: EngineDep, grant_id: int, decision: str, actor: str, body: Decision | None
) -> Grant:
    with writing(engine) as conn:
        reason = body.reason if body is not None else None
        return Grant(**grants.decide(conn, grant_id, decision, actor, reason))


@router.post(
    "/grants/{grant_id}/approve", tags=["grants"], name="approve_grant", responses=_GRANT_PROBLEMS
)
def approve_grant(
    grant_id: GrantId, engine: EngineDep, caller: Operator, body: OptionalDecision = None
) -> Grant:
    """Approve a requested grant: the client may call the service for the listed purposes."""
    return _decide(engine, grant_id, "approve", caller.actor, body)


@router.post(
    "/grants/{grant_id}/reject", tags=["grants"], name="reject_grant", responses=_GRANT_PROBLEMS
)
def reject_grant(
    grant_id: GrantId, engine: EngineDep, caller: Operator, body: OptionalDecision = None
) -> Grant:
    """Reject a requested grant, optionally with a reason for the consumer."""
    return _decide(engine, grant_id, "reject", caller.actor, body)


@router.post(
    "/grants/{grant_id}/revoke", tags=["grants"], name="revoke_grant", responses=_GRANT_PROBLEMS
)
def revoke_grant(
    grant_id: GrantId, engine: EngineDep, caller: Operator, body: OptionalDecision = None
) -> Grant:
    """Revoke a requested or approved grant; calls are refused within seconds."""
    return _decide(engine, grant_id, "revoke", caller.actor, body)


@router.get("/quotas", tags=["quotas"], name="list_quotas")
def list_quotas(engine: EngineDep, _caller: Operator, client: ClientFilter = None) -> list[Quota]:
    """Rate limits; a client without any is not limited."""
    with reading(engine) as conn:
        return [Quota(**q) for q in quotas.list_quotas(conn, client)]


@router.put(
    "/quotas", tags=["quotas"], name="set_quota", responses=problems({404: "No such client."})
)
def set_quota(body: QuotaIn, engine: EngineDep, caller: Operator) -> Quota:
    """Set a client's quota: client-wide, or for one service when `service_id` is given.
    Both apply."""
    with writing(engine) as conn:
        return Quota(
            **quotas.set_quota(
                conn,
                body.client_id,
                body.per_second,
                caller.actor,
                service_id=body.service_id,
                burst=body.burst,
            )
        )


@router.get("/audit", tags=["audit"], name="list_audit")
def list_audit(
    engine: EngineDep,
    _caller: Operator,
    target: Annotated[
        str | None,
        Query(
            max_length=300,
            pattern=r"^[\x20-\x7e]+$",
            description="Only entries about this target: a member, client or service id, "
            "`{client}#{kid}` for a key, `{client} -> {service}` for a grant.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AuditEntry]:
    """The audit trail, newest first: who changed what, when, before and after."""
    with reading(engine) as conn:
        return [AuditEntry(**e) for e in audit.entries(conn, target, limit)]


@router.get("/instance", tags=["instance"], name="get_instance")
def get_instance(engine: EngineDep, _caller: Operator) -> Instance:
    """This instance: its code and whether it is a sandbox."""
    with reading(engine) as conn:
        info = instance_info(conn)
    return Instance(code=info.code, sandbox=info.sandbox, created_at=info.created_at)
