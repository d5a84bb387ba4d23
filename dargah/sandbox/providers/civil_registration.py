"""Civil registration (ثبت احوال): identity, family and birth registration.

``POST /births`` registers a newborn: it gets a new checksum-valid national
code and joins the shared directory, so every other agency knows the child at
once (the demo then publishes ``birth-registered.v1`` for it).
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from dargah.core.identifiers import is_national_code, make_national_code
from dargah.sandbox.citizens import Citizen, jalali
from dargah.sandbox.events import birth_registered_event
from dargah.sandbox.providers.common import (
    ProviderContext,
    json_response,
    person_ref,
    person_route,
    problem,
)


def person_view(c: Citizen) -> dict[str, Any]:
    return {
        "national_code": c.national_code,
        "first_name": c.first_name,
        "last_name": c.last_name,
        "father_name": c.father_name,
        "gender": c.gender,
        "birth_date": c.birth_date,
        "birth_date_jalali": c.birth_date_jalali,
        "alive": c.alive,
        "death_date": c.death_date,
        "death_date_jalali": c.death_date_jalali,
    }


def certificate_view(c: Citizen) -> dict[str, Any]:
    return {
        "national_code": c.national_code,
        "first_name": c.first_name,
        "last_name": c.last_name,
        "gender": c.gender,
        "birth_date": c.birth_date,
        "birth_date_jalali": c.birth_date_jalali,
        "father_name": c.father_name,
        "father_national_code": c.father_code,
        "mother_national_code": c.mother_code,
        "place_of_birth": c.city,
    }


def _invalid_birth(detail: str, detail_fa: str) -> Response:
    return problem(400, "invalid-birth", "Invalid birth registration", detail, detail_fa)


def _newborn_code(ctx: ProviderContext, father: Citizen, mother: Citizen) -> str:
    rng = random.Random(f"{father.national_code}:{mother.national_code}:{len(mother.children)}")
    while True:
        code = make_national_code(mother.national_code[:3] + f"{rng.randrange(10**6):06d}")
        if is_national_code(code) and code not in ctx.directory:
            return code


def register_birth(ctx: ProviderContext, body: Any) -> Citizen | Response:
    """The registered newborn, or a 400 answer saying what is wrong with ``body``."""
    if not isinstance(body, dict):
        return _invalid_birth("the body must be a JSON object", "بدنه درخواست باید شیء JSON باشد")
    first_name, gender = body.get("first_name"), body.get("gender")
    if (
        not isinstance(first_name, str)
        or not first_name.strip()
        or gender not in ("male", "female")
    ):
        return _invalid_birth(
            "first_name and gender (male|female) are required", "نام و جنسیت نوزاد لازم است"
        )
    father = ctx.directory.get(str(body.get("father_national_code", "")))
    mother = ctx.directory.get(str(body.get("mother_national_code", "")))
    if father is None or mother is None or father.gender != "male" or mother.gender != "female":
        return _invalid_birth(
            "father and mother must be registered citizens",
            "پدر و مادر باید در ثبت احوال ثبت شده باشند",
        )
    try:
        born = date.fromisoformat(str(body.get("birth_date") or date.today().isoformat()))
    except ValueError:
        return _invalid_birth("birth_date must be YYYY-MM-DD", "تاریخ تولد نادرست است")
    child = Citizen(
        national_code=_newborn_code(ctx, father, mother),
        first_name=first_name.strip(),
        last_name=father.last_name,
        gender=str(gender),
        birth_date=born.isoformat(),
        birth_date_jalali=jalali(born),
        father_name=father.first_name,
        mobile=mother.mobile,
        postal_code=father.postal_code,
        province=father.province,
        city=father.city,
        address=father.address,
        father_code=father.national_code,
        mother_code=mother.national_code,
    )
    ctx.directory.put(child)
    for parent in (father, mother):
        ctx.directory.put(replace(parent, children=(*parent.children, child.national_code)))
    return child


def routes(ctx: ProviderContext) -> list[BaseRoute]:
    d = ctx.directory

    def family_view(c: Citizen) -> dict[str, Any]:
        return {
            "national_code": c.national_code,
            "spouse": person_ref(d.get(c.spouse) if c.spouse else None),
            "father": person_ref(d.get(c.father_code) if c.father_code else None),
            "mother": person_ref(d.get(c.mother_code) if c.mother_code else None),
            "children": [person_ref(d.get(k)) for k in c.children if k in d],
        }

    async def births(request: Request) -> Response:
        refused = ctx.refuse(request, "birth-registration.v1")
        if refused is not None:
            return refused
        try:
            body = await request.json()
        except ValueError:
            body = None
        child = register_birth(ctx, body)
        if isinstance(child, Response):
            return child
        if ctx.publish is not None:  # tell the agencies subscribed to births, through the bus
            await ctx.publish("birth-registered.v1", birth_registered_event(child))
        return json_response(certificate_view(child), 201)

    return [
        person_route(ctx, "/persons/{national_code}", "person-inquiry.v1", person_view),
        person_route(ctx, "/persons/{national_code}/family", "family-inquiry.v1", family_view),
        person_route(
            ctx,
            "/persons/{national_code}/mobile",
            "mobile-inquiry.v1",
            lambda c: {"national_code": c.national_code, "mobile": c.mobile},
        ),
        person_route(
            ctx,
            "/persons/{national_code}/birth-certificate",
            "birth-registration.v1",
            certificate_view,
        ),
        Route("/births", births, methods=["POST"]),
    ]
