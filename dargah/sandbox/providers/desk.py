"""An application desk: how an agency of the sandbox catalogue receives applications.

The welfare agency has its own application service (``benefit-application.v1``); every other
agency whose public services take applications online gets a desk, the bus service
``{member}/desk/applications.v1``, served here under ``/desk/{legal ID}``. A desk accepts an
application for one of the agency's public services, answers with its id and status, and
moves it on by itself (received, under review, approved) on the welfare agency's timings,
so that a citizen has a timeline to follow. Applications live in memory.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from dargah.client.provider import AssertionClaims
from dargah.core.identifiers import is_national_code
from dargah.sandbox.directory import CitizenDirectory
from dargah.sandbox.providers import welfare
from dargah.sandbox.providers.common import (
    bad_national_code,
    citizen_not_found,
    json_response,
    problem,
)

SUBSYSTEM = "desk"
SERVICE = "applications.v1"
STATUS_FA = {"received": "دریافت شد", "under-review": "در حال بررسی", "approved": "تأیید شد"}


@dataclass
class DeskApplication:
    national_code: str
    service_id: str
    details: dict[str, Any]
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    submitted: float = field(default_factory=time.time)

    def view(self) -> dict[str, Any]:
        elapsed = time.time() - self.submitted
        status = "received" if elapsed < welfare.TIMINGS["review"] else "under-review"
        if elapsed >= welfare.TIMINGS["decide"]:
            status = "approved"
        return {
            "id": self.id,
            "national_code": self.national_code,
            "service_id": self.service_id,
            "status": status,
            "status_fa": STATUS_FA[status],
            "channel": "request",
            "details": self.details,
            "submitted_at": datetime.fromtimestamp(self.submitted, UTC).isoformat(),
        }


def routes(legal_id: str, service_ids: set[str], directory: CitizenDirectory) -> list[BaseRoute]:
    """The desk of the agency ``legal_id`` for its public services ``service_ids``."""
    lock = threading.Lock()
    by_id: dict[str, DeskApplication] = {}
    by_citizen: dict[str, list[DeskApplication]] = {}
    suffix = f"/{legal_id}/{SUBSYSTEM}/{SERVICE}"

    def refused(request: Request, subject: str | None) -> Response | None:
        claims = request.scope.get("state", {}).get("gsb")
        if not isinstance(claims, AssertionClaims):
            return None  # a local, unprotected app
        if not claims.service.endswith(suffix):
            return problem(
                403,
                "wrong-service",
                "Not part of this service",
                f"this desk is {suffix}, not {claims.service}",
                "این نشانی جزو خدمتی که فراخوانی شده نیست",
            )
        if subject is not None and request.headers.get("gsb-subject") != subject:
            return problem(
                403,
                "subject-mismatch",
                "Subject mismatch",
                "GSB-Subject must be the national code the call is about",
                "کد ملی اعلام‌شده با کد ملی شخص یکی نیست",
            )
        return None

    async def submit(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("service_id") not in service_ids:
            return problem(
                400,
                "invalid-application",
                "Invalid application",
                "the body must be a JSON object with national_code and the service_id of one of "
                "this agency's public services",
                "کد ملی و شناسه خدمت این دستگاه لازم است",
            )
        code = str(body.get("national_code", ""))
        denied = refused(request, code)
        if denied is not None:
            return denied
        if not is_national_code(code):
            return bad_national_code(code)
        if directory.get(code) is None:
            return citizen_not_found(code)
        details = body.get("data") if isinstance(body.get("data"), dict) else {}
        app = DeskApplication(code, str(body["service_id"]), details or {})
        with lock:
            by_id[app.id] = app
            by_citizen.setdefault(code, []).append(app)
        return json_response(app.view(), 201)

    async def track(request: Request) -> Response:
        app = by_id.get(request.path_params["application_id"])
        if app is None:
            return refused(request, None) or problem(
                404,
                "application-not-found",
                "Application not found",
                "no application has this id",
                "درخواستی با این شناسه یافت نشد",
            )
        return refused(request, app.national_code) or json_response(app.view())

    async def of_person(request: Request) -> Response:
        code = request.path_params["national_code"]
        denied = refused(request, code)
        if denied is not None:
            return denied
        if not is_national_code(code):
            return bad_national_code(code)
        with lock:
            mine = [a.view() for a in by_citizen.get(code, [])]
        return json_response({"national_code": code, "applications": mine})

    return [
        Route("/applications", submit, methods=["POST"]),
        Route("/applications/{application_id}", track, methods=["GET"]),
        Route("/persons/{national_code}/applications", of_person, methods=["GET"]),
    ]


def openapi(legal_id: str, agency_name: str) -> dict[str, Any]:
    """The desk's OpenAPI document, as the demo registers it."""
    person = {"name": "national_code", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": f"میز درخواست‌های {agency_name}", "version": "1"},
        "paths": {
            "/applications": {
                "post": {"summary": "ثبت درخواست", "responses": {"201": {"description": "ثبت شد"}}}
            },
            "/applications/{application_id}": {
                "get": {
                    "summary": "پیگیری درخواست",
                    "parameters": [
                        {
                            "name": "application_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {"200": {"description": "درخواست"}},
                }
            },
            "/persons/{national_code}/applications": {
                "get": {
                    "summary": "درخواست‌های شخص",
                    "parameters": [person],
                    "responses": {"200": {"description": "درخواست‌ها"}},
                }
            },
        },
    }
