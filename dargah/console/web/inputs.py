"""Reading ids and choices from query strings and forms; anything malformed is a Persian 400."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from dargah.core.errors import BadRequest
from dargah.core.identifiers import (
    InvalidIdentifier,
    parse_member_id,
    parse_service_id,
    parse_subsystem_id,
)
from dargah.core.persian import to_latin_digits


def _text(source: Mapping[str, str], name: str, limit: int = 300) -> str:
    value = to_latin_digits(source.get(name) or "").strip()
    if len(value) > limit:
        raise BadRequest(f"{name} is too long", f"مقدار «{name}» بیش از اندازه بلند است")
    return value


def text(source: Mapping[str, str], name: str, limit: int = 300) -> str | None:
    return _text(source, name, limit) or None


def required(source: Mapping[str, str], name: str, label_fa: str, limit: int = 4000) -> str:
    value = _text(source, name, limit)
    if not value:
        raise BadRequest(f"{name} is required", f"«{label_fa}» را بنویسید")
    return value


def _ident(value: str, parse: object, what_fa: str) -> str:
    try:
        return str(parse(value))  # type: ignore[operator]
    except (InvalidIdentifier, ValueError) as exc:
        raise BadRequest(str(exc), f"{what_fa} «{value[:120]}» معتبر نیست") from exc


def member_id(source: Mapping[str, str], name: str = "id") -> str | None:
    value = _text(source, name)
    return _ident(value, parse_member_id, "شناسه دستگاه") if value else None


def client_id(source: Mapping[str, str], name: str = "id") -> str | None:
    value = _text(source, name)
    return _ident(value, parse_subsystem_id, "شناسه سامانه") if value else None


def service_id(source: Mapping[str, str], name: str = "id") -> str | None:
    value = _text(source, name)
    return _ident(value, parse_service_id, "شناسه خدمت") if value else None


def choice(source: Mapping[str, str], name: str, allowed: Iterable[str]) -> str | None:
    value = _text(source, name)
    if value and value not in set(allowed):
        raise BadRequest(f"{name} {value!r} is not allowed", f"مقدار «{name}» نامعتبر است")
    return value or None


def number(source: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    value = _text(source, name, 20)
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or not low <= int(value) <= high:
        raise BadRequest(f"{name} must be a number {low}-{high}", f"«{name}» باید عدد باشد")
    return int(value)


def moment(source: Mapping[str, str], name: str) -> datetime | None:
    """An ISO 8601 time (``2025-03-01`` or ``2025-03-01T10:00``, UTC when no zone is given)."""
    value = _text(source, name, 40)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(
            f"{name} is not an ISO time", "زمان را به شکل ۲۰۲۵-۰۳-۰۱T۱۰:۰۰ بنویسید"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
