"""Traffic police (پلیس راهور): driving licences, traffic fines and vehicles."""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute

from dargah.sandbox.citizens import Citizen
from dargah.sandbox.providers.common import ProviderContext, person_route


def licence_view(c: Citizen) -> dict[str, Any]:
    lic = c.licence
    return {
        "national_code": c.national_code,
        "status": lic.status,
        "number": lic.number,
        "class": lic.licence_class,
        "expires": lic.expires,
        "expires_jalali": lic.expires_jalali,
    }


def fines_view(c: Citizen) -> dict[str, Any]:
    return {
        "national_code": c.national_code,
        "fines": [
            {
                "number": f.number,
                "amount_rials": f.amount_rials,
                "date": f.date,
                "date_jalali": f.date_jalali,
                "description": f.description,
                "paid": f.paid,
                "plate": f.plate,
            }
            for f in c.fines
        ],
        "unpaid_total_rials": sum(f.amount_rials for f in c.fines if not f.paid),
    }


def vehicles_view(c: Citizen) -> dict[str, Any]:
    return {"national_code": c.national_code, "vehicles": [{"plate": p} for p in c.vehicles]}


def routes(ctx: ProviderContext) -> list[BaseRoute]:
    return [
        person_route(ctx, "/licences/{national_code}", "licence-inquiry.v1", licence_view),
        person_route(ctx, "/fines/{national_code}", "fines-inquiry.v1", fines_view),
        person_route(ctx, "/persons/{national_code}/vehicles", "vehicle-inquiry.v1", vehicles_view),
    ]
