"""Forms from a public service's JSON Schema: the fields the citizen fills, and their checks.

Fields with ``x-data-item`` are pre-filled over the bus and shown read-only; the citizen is
asked only for the rest. Supported: strings (``pattern``, choices as ``enum`` or as
``oneOf`` of ``{"const", "title"}``, ``minLength``, ``maxLength``, ``format: date``),
integers and numbers (``minimum``, ``maximum``), booleans, and arrays of strings (one per
line). Digits may be typed in Persian or Arabic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from dargah.core.persian import to_latin_digits

MAX_TEXT = 2000


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    title: str
    kind: str  # text, number, select, checkbox, date, lines
    required: bool
    options: tuple[tuple[str, str], ...] = ()  # (value, label)
    pattern: str | None = None
    description: str | None = None


def choices(prop: dict[str, Any]) -> list[tuple[str, str]]:
    """(value, label) of a choice field: ``oneOf``/``anyOf`` of ``{"const", "title"}``, or
    ``enum`` (labelled by the value itself)."""
    for key in ("oneOf", "anyOf"):
        options = prop.get(key)
        if (
            isinstance(options, list)
            and options
            and all(isinstance(o, dict) and "const" in o for o in options)
        ):
            return [(str(o["const"]), str(o.get("title") or o["const"])) for o in options]
    return [(str(o), str(o)) for o in prop.get("enum") or ()]


def citizen_fields(schema: dict[str, Any]) -> list[Field]:
    """The fields no agency fills: what the citizen must type."""
    required = set(schema.get("required") or [])
    out = []
    for name, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, dict) or "x-data-item" in prop:
            continue
        kind = "text"
        t = prop.get("type")
        if choices(prop):
            kind = "select"
        elif t in ("integer", "number"):
            kind = "number"
        elif t == "boolean":
            kind = "checkbox"
        elif t == "array":
            kind = "lines"
        elif prop.get("format") == "date":
            kind = "date"
        out.append(
            Field(
                name=name,
                title=str(prop.get("title") or name),
                kind=kind,
                required=name in required,
                options=tuple(choices(prop)),
                pattern=prop.get("pattern"),
                description=prop.get("description"),
            )
        )
    return out


def _check(prop: dict[str, Any], raw: str, title: str) -> tuple[Any, str | None]:
    t = prop.get("type")
    text = to_latin_digits(raw).strip() if t != "array" else raw
    allowed = [value for value, _label in choices(prop)]
    if allowed:
        if text in allowed:
            return text, None
        return None, f"یکی از گزینه‌های «{title}» را برگزینید."
    if t in ("integer", "number"):
        try:
            value: Any = int(text) if t == "integer" else float(text)
        except ValueError:
            return None, f"«{title}» باید عدد باشد."
        if "minimum" in prop and value < prop["minimum"]:
            return None, f"«{title}» کمتر از حد مجاز است."
        if "maximum" in prop and value > prop["maximum"]:
            return None, f"«{title}» بیشتر از حد مجاز است."
        return value, None
    if t == "boolean":
        return text in ("on", "true", "1"), None
    if t == "array":
        return [to_latin_digits(x).strip() for x in raw.splitlines() if x.strip()][:100], None
    if len(text) > int(prop.get("maxLength", MAX_TEXT)):
        return None, f"«{title}» بیش از اندازه بلند است."
    if len(text) < int(prop.get("minLength", 0)):
        return None, f"«{title}» کوتاه است."
    if prop.get("format") == "date":
        try:
            date.fromisoformat(text)
        except ValueError:
            return None, f"«{title}» باید تاریخ درست باشد."
    pattern = prop.get("pattern")
    if pattern and text.upper() != text and pattern.startswith("^IR"):
        text = text.upper()
    if pattern and not re.search(str(pattern), text):
        return None, f"«{title}» درست وارد نشده است."
    return text, None


def validate(schema: dict[str, Any], form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """(the citizen's values, errors by field name in Persian)."""
    props = schema.get("properties") or {}
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in citizen_fields(schema):
        raw = form.get(f.name, "")
        if f.kind == "checkbox":
            values[f.name] = raw in ("on", "true", "1")
            continue
        if not raw.strip():
            if f.required:
                errors[f.name] = f"«{f.title}» را وارد کنید."
            continue
        value, error = _check(props[f.name], raw[:MAX_TEXT], f.title)
        if error:
            errors[f.name] = error
        else:
            values[f.name] = value
    return values, errors
