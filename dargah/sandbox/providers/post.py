"""National post (پست): addresses by citizen and by postal code, and postcode checks."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from dargah.core.identifiers import is_postal_code
from dargah.sandbox.citizens import Citizen
from dargah.sandbox.providers.common import ProviderContext, json_response, person_route, problem

OFFICES: dict[str, dict[str, str]] = {
    "1559996911": {
        "postal_code": "1559996911",
        "province": "تهران",
        "city": "تهران",
        "address": "تهران، خیابان شریعتی، بالاتر از پل سیدخندان، ساختمان مرکزی شرکت ملی پست",
    },
}
"""Addresses of the post's own offices (not citizens): the postcode service's example."""


def address_view(c: Citizen) -> dict[str, Any]:
    return {
        "national_code": c.national_code,
        "postal_code": c.postal_code,
        "province": c.province,
        "city": c.city,
        "address": c.address,
    }


def _address_of(ctx: ProviderContext, postal_code: str) -> dict[str, str] | None:
    if postal_code in OFFICES:
        return OFFICES[postal_code]
    residents = ctx.directory.at_postal_code(postal_code)
    if not residents:
        return None
    c = residents[0]
    return {
        "postal_code": postal_code,
        "province": c.province,
        "city": c.city,
        "address": c.address,
    }


def _malformed(code: str) -> Response:
    return problem(
        400,
        "invalid-postal-code",
        "Invalid postal code",
        f"{code!r} is not a well-formed postal code",
        "کد پستی واردشده معتبر نیست",
    )


def routes(ctx: ProviderContext) -> list[BaseRoute]:
    async def by_postal_code(request: Request) -> Response:
        code = request.path_params["postal_code"]
        refused = ctx.refuse(request, "address-inquiry.v1")
        if refused is not None:
            return refused
        if not is_postal_code(code):
            return _malformed(code)
        address = _address_of(ctx, code)
        if address is None:
            return problem(
                404,
                "address-not-found",
                "Address not found",
                f"no address has postal code {code}",
                f"نشانی‌ای با کد پستی {code} یافت نشد",
            )
        return json_response(address)

    async def check_postcode(request: Request) -> Response:
        code = request.path_params["postal_code"]
        refused = ctx.refuse(request, "postcode-validation.v1")
        if refused is not None:
            return refused
        address = _address_of(ctx, code) if is_postal_code(code) else None
        return json_response(
            {
                "postal_code": code,
                "well_formed": is_postal_code(code),
                "exists": address is not None,
                "province": address["province"] if address else None,
                "city": address["city"] if address else None,
            }
        )

    return [
        person_route(ctx, "/persons/{national_code}/address", "address-inquiry.v1", address_view),
        Route("/addresses/{postal_code}", by_postal_code, methods=["GET"]),
        Route("/postcodes/{postal_code}", check_postcode, methods=["GET"]),
    ]
