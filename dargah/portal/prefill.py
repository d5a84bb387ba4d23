"""Once-only pre-fill: which bus service supplies each form field, and its value in the answer.

A form property with ``x-data-item`` is filled from the authentic source of that item (the
bus service whose ``supplies`` names it). The value is found in the source's JSON answer by
the property's name: the same key (at the top or one level down), ``full_name`` from first
and last name, ``X_national_code`` from ``X.national_code``, and a few common shapes (lists
of people, plates, programmes, fines) turned into readable text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dargah.portal.sources import DataCatalogue, Source

STATUS_WORDS = {
    "active": "فعال",
    "inactive": "غیرفعال",
    "none": "ندارد",
    "suspended": "تعلیق",
    "valid": "معتبر",
    "expired": "منقضی",
    True: "بله",
    False: "خیر",
}
_ALIASES = {
    "taxpayer_status": ("status",),
    "welfare_programmes": ("programs",),
    "licence_number": ("number",),
    "deceased_status": ("alive",),
    "family_members": ("children", "spouse"),
    "unpaid_fines": ("fines",),
}


@dataclass
class SourcePlan:
    """One source and the form fields it fills."""

    source: Source
    items: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)


def plan(schema: dict[str, Any], sources: DataCatalogue) -> tuple[list[SourcePlan], list[str]]:
    """(sources to fetch from, in form order; data items no registered service supplies)."""
    plans: dict[str, SourcePlan] = {}
    missing: list[str] = []
    for name, prop in (schema.get("properties") or {}).items():
        item = prop.get("x-data-item") if isinstance(prop, dict) else None
        if not isinstance(item, str):
            continue
        src = sources.source_of(item)
        if src is None or src.person_path is None:
            missing.append(item)
            continue
        p = plans.setdefault(src.service_id, SourcePlan(src))
        if item not in p.items:
            p.items.append(item)
        p.fields.append(name)
    return list(plans.values()), missing


def _text(value: Any) -> Any:
    if isinstance(value, (str, bool)):
        return STATUS_WORDS.get(value, value)
    if isinstance(value, dict):
        for key in ("full_name", "title_fa", "name", "plate", "description", "national_code"):
            if key in value:
                who = value.get("full_name") or " ".join(
                    str(value[k]) for k in ("first_name", "last_name") if value.get(k)
                )
                return who or str(value[key])
        return "، ".join(f"{v}" for v in value.values() if isinstance(v, (str, int)))
    if isinstance(value, list):
        return [_text(v) for v in value if v is not None]
    return value


def value_for(name: str, prop: dict[str, Any], body: Any) -> Any:
    """The value of form field ``name`` in a source's answer ``body`` (None if absent)."""
    try:
        return _value_for(name, prop, body)
    except (TypeError, ValueError, AttributeError):  # an answer of an unexpected shape
        return None


def _value_for(name: str, prop: dict[str, Any], body: Any) -> Any:
    if not isinstance(body, dict):
        return None
    if name == "full_name" and "full_name" not in body and body.get("first_name"):
        return f"{body.get('first_name', '')} {body.get('last_name', '')}".strip()
    if name in body:
        raw = body[name]
    elif name.endswith("_national_code") and isinstance(body.get(name[:-14]), dict):
        raw = body[name[:-14]].get("national_code")
    else:
        raw = None
        for alias in _ALIASES.get(name, ()):
            if alias in body and body[alias] is not None:
                raw = body[alias] if raw is None else [*_as_list(raw), *_as_list(body[alias])]
        if raw is None:
            for nested in body.values():
                if isinstance(nested, dict) and name in nested:
                    raw = nested[name]
                    break
    if name == "deceased_status" and isinstance(raw, bool):
        return "در قید حیات" if raw else "درگذشته"
    if name == "unpaid_fines" and isinstance(raw, list):
        return [_text(f) for f in raw if isinstance(f, dict) and not f.get("paid")]
    value = _text(raw)
    if prop.get("type") == "array" and value is not None and not isinstance(value, list):
        value = [value]
    if prop.get("type") == "string" and isinstance(value, list):
        value = "، ".join(map(str, value))
    return value


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
