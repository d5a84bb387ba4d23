"""What every sandbox provider shares: JSON answers, problems, and the service check.

When the app runs behind :class:`~dargah.client.provider.GsbAssertionMiddleware`,
each route also checks that the bus called it as part of the right service
(the assertion's ``aud``) and, for a personal-data route about one citizen,
that ``GSB-Subject`` names that citizen: the message log then always records
whose data was really returned.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dargah.client.provider import AssertionClaims
from dargah.core.identifiers import is_national_code
from dargah.sandbox.citizens import Citizen
from dargah.sandbox.directory import CitizenDirectory
from dargah.sandbox.model import Agency

PROBLEM_JSON = "application/problem+json"


def json_response(data: Any, status: int = 200) -> Response:
    """A UTF-8 JSON answer (Persian text as is, not \\u-escaped)."""
    return JSONResponse(data, status_code=status)


def problem(status: int, kind: str, title: str, detail: str, detail_fa: str) -> Response:
    """A provider's own problem+json answer (never with GSB-Error: that is the bus's)."""
    body = {
        "type": f"urn:dargah:sandbox:{kind}",
        "title": title,
        "status": status,
        "detail": detail,
        "detail_fa": detail_fa,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def bad_national_code(code: str) -> Response:
    return problem(
        400,
        "invalid-national-code",
        "Invalid national code",
        f"{code!r} is not a valid national code",
        "کد ملی واردشده معتبر نیست",
    )


def citizen_not_found(code: str) -> Response:
    return problem(
        404,
        "citizen-not-found",
        "Citizen not found",
        f"no citizen with national code {code}",
        f"شهروندی با کد ملی {code} در این سامانه یافت نشد",
    )


Publisher = Callable[[str, dict[str, Any]], Awaitable[None]]
"""Publishes an event on one of the agency's own topics (by topic code) through the bus."""


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """One agency's view of the sandbox."""

    agency: Agency
    directory: CitizenDirectory
    publish: Publisher | None = None

    def refuse(
        self, request: Request, service_code: str, subject: str | None = None
    ) -> Response | None:
        """A 403 answer when the bus called this route for another service or subject."""
        claims = request.scope.get("state", {}).get("gsb")
        if not isinstance(claims, AssertionClaims):
            return None  # no verifier: a local, unprotected app
        expected = f"/{self.agency.legal_id}/{self.agency.subsystem_code}/{service_code}"
        if not claims.service.endswith(expected):
            return problem(
                403,
                "wrong-service",
                "Not part of this service",
                f"this path belongs to {service_code}, not to {claims.service}",
                "این نشانی جزو خدمتی که فراخوانی شده نیست",
            )
        if subject is not None and self.agency.service(service_code).personal_data:
            if request.headers.get("gsb-subject") != subject:
                return problem(
                    403,
                    "subject-mismatch",
                    "Subject mismatch",
                    "GSB-Subject must be the national code the call asks about",
                    "کد ملی اعلام‌شده با کد ملی شخص مورد استعلام یکی نیست",
                )
        return None

    def delivery_refused(self, request: Request, client_id_suffix: str) -> Response | None:
        """A 403 answer when an event delivery is not addressed to this agency."""
        claims = request.scope.get("state", {}).get("gsb")
        if not isinstance(claims, AssertionClaims) or claims.service.endswith(client_id_suffix):
            return None
        return problem(
            403,
            "wrong-subscriber",
            "Not addressed to this agency",
            f"this delivery is for {claims.service}",
            "این رویداد برای این دستگاه نیست",
        )


PersonView = Callable[[Citizen], Any]


def person_route(ctx: ProviderContext, path: str, service_code: str, view: PersonView) -> Route:
    """``GET {path}`` with a ``{national_code}`` parameter, answering ``view(citizen)``."""

    async def endpoint(request: Request) -> Response:
        code = request.path_params["national_code"]
        refused = ctx.refuse(request, service_code, subject=code)
        if refused is not None:
            return refused
        if not is_national_code(code):
            return bad_national_code(code)
        citizen = ctx.directory.get(code)
        if citizen is None:
            return citizen_not_found(code)
        return json_response(view(citizen))

    return Route(path, endpoint, methods=["GET"])


def person_ref(citizen: Citizen | None) -> dict[str, str] | None:
    if citizen is None:
        return None
    return {
        "national_code": citizen.national_code,
        "first_name": citizen.first_name,
        "last_name": citizen.last_name,
    }
