"""Tax administration (امور مالیاتی): a citizen's taxpayer status and tax file number."""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute

from dargah.sandbox.citizens import Citizen
from dargah.sandbox.providers.common import ProviderContext, person_route


def taxpayer_view(c: Citizen) -> dict[str, Any]:
    return {
        "national_code": c.national_code,
        "full_name": c.full_name,
        "status": c.taxpayer_status,
        "tax_file_number": c.tax_file_number,
    }


def routes(ctx: ProviderContext) -> list[BaseRoute]:
    return [person_route(ctx, "/taxpayers/{national_code}", "taxpayer-inquiry.v1", taxpayer_view)]
