"""The management API (protocol §8): the registry over HTTP, under ``/api/v1/``.

Described by OpenAPI at ``/api/openapi.json`` (public); every other path under
``/api/`` needs ``Authorization: Bearer <admin API token>`` (see
:mod:`dargah.console.auth`). Every error is ``application/problem+json`` (see
:mod:`dargah.console.api_errors`). Every change is one transaction and one or
more audit entries, written by the registry functions this module wraps; the
actor is the caller's: ``api:{name}`` for the admin token named ``name``.

Layers, outermost first: :class:`~dargah.console.api_errors.GuardMiddleware`
(request id, body limit, last-resort 500), :class:`~dargah.console.auth.AuthMiddleware`,
FastAPI's exception handlers, the routes of ``api_members``, ``api_services``,
``api_grants``, ``api_admin`` (admin tokens) and the others.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine

from dargah.console import (
    api_admin,
    api_certs,
    api_grants,
    api_incidents,
    api_log,
    api_members,
    api_reports,
    api_services,
    api_status,
)
from dargah.console.api_deps import API_PREFIX, ID_NOTE
from dargah.console.api_errors import GuardMiddleware, install_error_handlers
from dargah.console.auth import PUBLIC_PATHS, AuthMiddleware
from dargah.console.schemas import Problem
from dargah.core.errors import PROBLEM_CONTENT_TYPE
from dargah.core.settings import Settings

OPENAPI_PATH = "/api/openapi.json"
_DESCRIPTION = f"""
The control plane of the Government Service Bus: members, subsystems, keys, bus
services, grants, quotas and the audit trail.

Authentication: `Authorization: Bearer <admin API token>` on every route except
`{OPENAPI_PATH}`. Errors: `application/problem+json` (RFC 9457) with a stable
`code`, `detail` and Persian `detail_fa`; invalid input is `400 bad-request`
naming the field.

{ID_NOTE}
"""
_ALWAYS = {
    "400": "Invalid input: the detail names the field.",
    "401": "No or wrong token.",
    "403": "The caller's role may not do this.",
    "500": "A bug (logged); never caused by input.",
}


class ManagementAPI(FastAPI):
    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            self.openapi_schema = _with_problems(super().openapi())
        return self.openapi_schema


def _with_problems(doc: dict[str, Any]) -> dict[str, Any]:
    """Replace FastAPI's 422 with our problem responses, all sharing the Problem schema."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    problem = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, ops in doc.get("paths", {}).items():
        for op in ops.values():
            responses: dict[str, Any] = op.setdefault("responses", {})
            responses.pop("422", None)
            if path not in PUBLIC_PATHS:
                for status, text in _ALWAYS.items():
                    responses.setdefault(status, {"description": text})
            if "requestBody" in op:
                responses.setdefault("413", {"description": "The body is too large."})
            for status, response in responses.items():
                if status[0] in "45":
                    response["content"] = problem
    return doc


def build_management_app(settings: Settings, engine: Engine) -> Any:
    """The management API as an ASGI app; it also answers every other path it is given
    (the bus hands over all paths it does not serve itself) with ``404 not-found``."""
    app = ManagementAPI(
        title="Dargah management API",
        version="1",
        description=_DESCRIPTION,
        openapi_url=OPENAPI_PATH,
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.engine = engine
    app.state.settings = settings
    for module in (
        api_members,
        api_certs,
        api_services,
        api_grants,
        api_log,
        api_status,
        api_incidents,
    ):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(api_admin.router, prefix=API_PREFIX)
    app.include_router(api_reports.router, prefix=API_PREFIX)
    install_error_handlers(app)
    app.add_middleware(AuthMiddleware, engine=engine)
    app.add_middleware(GuardMiddleware)  # added last: the outermost layer
    return app
