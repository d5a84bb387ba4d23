"""Minimal OpenAPI 3.1 documents for the sandbox services.

:func:`openapi_document` describes one service's operations, with the JSON
schemas of what the sandbox providers answer. The registry stores the document
(``dargah service add --openapi FILE``) and the bus serves it from
``/r1/meta/services/{id}/openapi``.
"""

from __future__ import annotations

import re
from typing import Any

from dargah.sandbox.model import Agency, Operation, ServiceSpec

Schema = dict[str, Any]

_STR: Schema = {"type": "string"}
_NSTR: Schema = {"type": ["string", "null"]}
_BOOL: Schema = {"type": "boolean"}
_INT: Schema = {"type": "integer"}
_CODE: Schema = {"type": "string", "pattern": "^[0-9]{10}$", "description": "کد ملی"}
_DATE: Schema = {"type": "string", "format": "date"}
_NDATE: Schema = {"type": ["string", "null"], "format": "date"}

PARAMETERS: dict[str, Schema] = {
    "national_code": _CODE,
    "postal_code": {"type": "string", "pattern": "^[0-9]{10}$", "description": "کد پستی"},
    "application_id": {"type": "string", "description": "شناسه یا کد رهگیری درخواست"},
}


def _obj(props: dict[str, Schema], optional: tuple[str, ...] = ()) -> Schema:
    required = [k for k in props if k not in optional]
    return {"type": "object", "properties": props, "required": required}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


_PERSON_REF = _obj({"national_code": _CODE, "first_name": _STR, "last_name": _STR})
_NREF: Schema = {"oneOf": [_PERSON_REF, {"type": "null"}]}
_FINE = _obj(
    {
        "number": _STR,
        "amount_rials": _INT,
        "date": _DATE,
        "date_jalali": _STR,
        "description": _STR,
        "paid": _BOOL,
        "plate": _NSTR,
    }
)

SCHEMAS: dict[str, Schema] = {
    "Problem": _obj(
        {"type": _STR, "title": _STR, "status": _INT, "detail": _STR, "detail_fa": _STR}
    ),
    "Mobile": _obj(
        {"national_code": _CODE, "mobile": {"type": "string", "pattern": "^09[0-9]{9}$"}}
    ),
    "Person": _obj(
        {
            "national_code": _CODE,
            "first_name": _STR,
            "last_name": _STR,
            "father_name": _STR,
            "gender": {"enum": ["male", "female"]},
            "birth_date": _DATE,
            "birth_date_jalali": _STR,
            "alive": _BOOL,
            "death_date": _NDATE,
            "death_date_jalali": _NSTR,
        }
    ),
    "Family": _obj(
        {
            "national_code": _CODE,
            "spouse": _NREF,
            "father": _NREF,
            "mother": _NREF,
            "children": _array(_PERSON_REF),
        }
    ),
    "Birth": _obj(
        {
            "first_name": _STR,
            "gender": {"enum": ["male", "female"]},
            "father_national_code": _CODE,
            "mother_national_code": _CODE,
            "birth_date": _DATE,
        },
        optional=("birth_date",),
    ),
    "BirthCertificate": _obj(
        {
            "national_code": _CODE,
            "first_name": _STR,
            "last_name": _STR,
            "gender": _STR,
            "birth_date": _DATE,
            "birth_date_jalali": _STR,
            "father_name": _STR,
            "father_national_code": {"type": ["string", "null"]},
            "mother_national_code": {"type": ["string", "null"]},
            "place_of_birth": _STR,
        }
    ),
    "Address": _obj(
        {
            "national_code": _CODE,
            "postal_code": _STR,
            "province": _STR,
            "city": _STR,
            "address": _STR,
        },
        optional=("national_code",),
    ),
    "PostcodeCheck": _obj(
        {
            "postal_code": _STR,
            "well_formed": _BOOL,
            "exists": _BOOL,
            "province": _NSTR,
            "city": _NSTR,
        }
    ),
    "Taxpayer": _obj(
        {
            "national_code": _CODE,
            "full_name": _STR,
            "status": {"enum": ["active", "inactive", "none"]},
            "tax_file_number": _NSTR,
        }
    ),
    "Licence": _obj(
        {
            "national_code": _CODE,
            "status": {"enum": ["valid", "suspended", "expired", "none"]},
            "number": _NSTR,
            "class": _NSTR,
            "expires": _NDATE,
            "expires_jalali": _NSTR,
        }
    ),
    "Fines": _obj({"national_code": _CODE, "fines": _array(_FINE), "unpaid_total_rials": _INT}),
    "Vehicles": _obj({"national_code": _CODE, "vehicles": _array(_obj({"plate": _STR}))}),
    "Eligibility": _obj(
        {
            "national_code": _CODE,
            "eligible": _BOOL,
            "programs": _array(_obj({"code": _STR, "title_fa": _STR})),
            "reasons_fa": _array(_STR),
        }
    ),
    "NewApplication": _obj(
        {"national_code": _CODE, "program": _STR, "details": {"type": "object"}},
        optional=("details",),
    ),
    "Application": _obj(
        {
            "id": _STR,
            "tracking_code": _STR,
            "national_code": _CODE,
            "program": _STR,
            "program_title_fa": _STR,
            "status": {"enum": ["received", "under-review", "approved", "rejected"]},
            "status_fa": _STR,
            "channel": {"enum": ["request", "proactive"]},
            "submitted_at": {"type": "string", "format": "date-time"},
        }
    ),
    "Applications": _obj({"national_code": _CODE, "applications": _array(_ref("Application"))}),
}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _operation(op: Operation) -> Schema:
    params = [
        {"name": name, "in": "path", "required": True, "schema": PARAMETERS[name]}
        for name in re.findall(r"\{(\w+)\}", op.path)
    ]
    problem = {
        "description": "مسئله",
        "content": {"application/problem+json": {"schema": _ref("Problem")}},
    }
    doc: Schema = {
        "summary": op.summary_fa,
        "operationId": f"{op.method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', op.path)}",
        "parameters": params,
        "responses": {
            str(op.status): _json(_ref(op.response), "پاسخ موفق"),
            "400": problem,
            "401": problem,
            "404": problem,
        },
    }
    if op.request is not None:
        doc["requestBody"] = {"required": True, **_json(_ref(op.request), "درخواست")}
    return doc


def _used(names: set[str]) -> set[str]:
    """The schema names reachable from ``names`` through $refs."""
    found = set(names)
    text = repr([SCHEMAS[n] for n in names])
    nested = set(re.findall(r"#/components/schemas/(\w+)", text)) - found
    return found | (_used(nested) if nested else set())


def openapi_document(agency: Agency, service: ServiceSpec) -> dict[str, Any]:
    """The OpenAPI 3.1 document of one sandbox service (paths relative to the service)."""
    paths: dict[str, Schema] = {}
    for op in service.operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    names = {"Problem"} | {op.response for op in service.operations}
    names |= {op.request for op in service.operations if op.request is not None}
    version = service.code.rsplit(".v", 1)[-1] if ".v" in service.code else "1"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{service.title_fa} ({agency.name_fa})",
            "summary": f"{service.title_en}: {agency.name_en}",
            "version": f"{version}.0.0",
            "x-gsb-personal-data": service.personal_data,
            "x-gsb-purposes": list(service.purposes),
            "x-gsb-supplies": list(service.supplies),
        },
        "paths": paths,
        "components": {"schemas": {n: SCHEMAS[n] for n in sorted(_used(names))}},
    }
