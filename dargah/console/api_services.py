"""Bus services: what provider subsystems offer, and the data items they are the source of."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

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
from dargah.console.schemas import CLIENT_ID_PATTERN, Service, ServiceIn, ServicePatch
from dargah.core.errors import NotFound
from dargah.registry import services

router = APIRouter(tags=["services"])
ProviderFilter = Annotated[
    str | None,
    Query(
        alias="provider",
        max_length=120,
        pattern=CLIENT_ID_PATTERN,
        description="Only the services of this provider subsystem (its client id).",
    ),
]


@router.get("/services", name="list_services")
def list_services(
    engine: EngineDep, _caller: Operator, provider: ProviderFilter = None
) -> list[Service]:
    """Every bus service, removed ones included (see `status`)."""
    with reading(engine) as conn:
        return [Service(**s) for s in services.list_services(conn, provider)]


@router.post(
    "/services",
    status_code=201,
    name="add_service",
    responses=problems(
        {
            404: "No such provider subsystem.",
            409: "The service exists already, or its provider is inactive.",
        }
    ),
)
def add_service(body: ServiceIn, engine: EngineDep, caller: Operator, request: Request) -> Service:
    """Register a bus service of a provider subsystem."""
    doc = None if body.openapi is None else json.dumps(body.openapi, ensure_ascii=False)
    with writing(engine) as conn:
        return Service(
            **services.add_service(
                conn,
                body.id,
                body.base_url,
                caller.actor,
                title=body.title,
                personal_data=body.personal_data,
                timeout_s=body.timeout_s,
                max_body=body.max_body,
                openapi=doc,
                supplies=body.supplies,
                store_bodies=body.store_bodies,
                settings=request.app.state.settings,
            )
        )


@router.get(
    SERVICE_PATH,
    name="get_service",
    description=ID_NOTE,
    responses=problems({404: "No such service."}),
)
def get_service(service: ServiceId, engine: EngineDep, _caller: Operator) -> Service:
    with reading(engine) as conn:
        return Service(**services.get_service(conn, service))


@router.get(
    SERVICE_PATH + "/openapi",
    name="get_service_openapi",
    responses=problems({404: "No such service, or it has no OpenAPI document."}),
)
def get_service_openapi(service: ServiceId, engine: EngineDep, _caller: Operator) -> dict[str, Any]:
    """The provider's OpenAPI document of the service."""
    with reading(engine) as conn:
        doc = services.get_openapi(conn, service)
    if doc is None:
        raise NotFound(f"service {service} has no OpenAPI document", "سند OpenAPI ثبت نشده است")
    parsed: dict[str, Any] = json.loads(doc)
    return parsed


@router.patch(SERVICE_PATH, name="update_service", responses=problems({404: "No such service."}))
def update_service(
    service: ServiceId, body: ServicePatch, engine: EngineDep, caller: Operator, request: Request
) -> Service:
    """Change some of a service's settings; fields left out keep their value.
    `maintenance: true` makes calls answer `service-disabled`."""
    changes = body.changes()
    if "openapi" in changes and changes["openapi"] is not None:
        changes["openapi"] = json.dumps(changes["openapi"], ensure_ascii=False)
    with writing(engine) as conn:
        return Service(
            **services.update_service(
                conn, service, changes, caller.actor, request.app.state.settings
            )
        )


@router.delete(SERVICE_PATH, name="remove_service", responses=problems({404: "No such service."}))
def remove_service(service: ServiceId, engine: EngineDep, caller: Operator) -> Service:
    """Remove a service (kept with status `removed`, for the audit trail and the message log)."""
    with writing(engine) as conn:
        return Service(**services.remove_service(conn, service, caller.actor))
