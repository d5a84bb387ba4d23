"""Reading one value of a card, typed (JSON) or as CSV text, by the rules of catalogue.md.

Each reader returns the value, ``None`` for null, or raises :class:`Invalid` with the
reason in English and Persian.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

NULLS = ("", "NA")
TRUE = frozenset({"true", "yes", "y", "بله"})
FALSE = frozenset({"false", "no", "n", "خیر"})
_INT_RE = re.compile(r"[+-]?[0-9]+(\.0*)?")
_NUMBER_RE = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)")
LIST_SEP = "|"
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LATIN = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "01234567890123456789")


def to_latin_digits(value: str) -> str:
    """Persian and Arabic-Indic digits as Latin ones (a fixed table: this runs for every cell)."""
    return value.translate(_LATIN)


class Invalid(ValueError):
    def __init__(self, reason: str, reason_fa: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.reason_fa = reason_fa


def is_null(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in NULLS)


def text(value: Any) -> str | None:
    if is_null(value):
        return None
    if not isinstance(value, str):
        raise Invalid(f"must be text, not {type(value).__name__}", "باید متن باشد")
    if _CONTROL_RE.search(value):
        raise Invalid("must not contain control characters", "نباید نویسهٔ کنترلی داشته باشد")
    return value.strip()


def boolean(value: Any) -> bool | None:
    if is_null(value):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        token = value.strip().lower()
        if token in TRUE:
            return True
        if token in FALSE:
            return False
    raise Invalid(
        f"{value!r} is not a boolean: use true/false, yes/no, Y/N or بله/خیر",
        "مقدار بله/خیر نامعتبر است",
    )


def integer(value: Any, low: int = 0, high: int | None = None) -> int | None:
    if is_null(value):
        return None
    if isinstance(value, bool):
        raise Invalid("must be a whole number, not a boolean", "باید عدد صحیح باشد")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        token = to_latin_digits(value.strip())
        if not _INT_RE.fullmatch(token):
            raise Invalid(f"{value!r} is not a whole number", "باید عدد صحیح باشد")
        value = int(token.split(".")[0])
    if not isinstance(value, int):
        raise Invalid(f"{value!r} is not a whole number", "باید عدد صحیح باشد")
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise Invalid(
            f"{value} must be {bounds}",
            f"عدد باید دست‌کم {low} باشد" if high is None else f"عدد باید بین {low} و {high} باشد",
        )
    return value


def number(value: Any, low: float, high: float) -> float | None:
    if is_null(value):
        return None
    if isinstance(value, bool):
        raise Invalid("must be a number, not a boolean", "باید عدد باشد")
    if isinstance(value, str):
        token = to_latin_digits(value.strip())
        if not _NUMBER_RE.fullmatch(token):
            raise Invalid(f"{value!r} is not a number", "باید عدد باشد")
        value = float(token)
    if not isinstance(value, int | float):
        raise Invalid(f"{value!r} is not a number", "باید عدد باشد")
    if not (low <= value <= high):
        raise Invalid(
            f"{value} must be between {low:g} and {high:g}", f"عدد باید بین {low:g} و {high:g} باشد"
        )
    return float(value)


def json_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError as exc:
        raise Invalid(f"is not valid JSON ({exc.args[0]})", "JSON معتبر نیست") from None


def str_list(value: Any) -> list[str] | None:
    """A list of strings: a JSON list, or CSV text joined with '|' (or a JSON array in the cell)."""
    if is_null(value):
        return None
    if isinstance(value, str):
        cell = value.strip()
        if cell.startswith("["):
            value = json_text(cell)
        else:
            return [item.strip() for item in cell.split(LIST_SEP) if item.strip()]
    if not isinstance(value, list):
        raise Invalid("must be a list", "باید فهرست باشد")
    out = []
    for item in value:
        if not isinstance(item, str):
            raise Invalid(f"list item {item!r} must be text", "اقلام فهرست باید متن باشند")
        if item.strip():
            out.append(item.strip())
    return out


def enum(value: Any, allowed: tuple[str, ...]) -> str | None:
    token = text(value)
    if token is None:
        return None
    if token not in allowed:
        raise Invalid(
            f"{token!r} is not one of {', '.join(allowed)}",
            f"«{token}» مجاز نیست؛ یکی از {'، '.join(allowed)}",
        )
    return token


def enum_list(value: Any, allowed: tuple[str, ...]) -> list[str] | None:
    items = str_list(value)
    if items is None:
        return None
    bad = [i for i in items if i not in allowed]
    if bad:
        raise Invalid(
            f"{', '.join(map(repr, bad))} not one of {', '.join(allowed)}",
            f"«{'، '.join(bad)}» مجاز نیست؛ یکی از {'، '.join(allowed)}",
        )
    return list(dict.fromkeys(items))


def url(value: Any) -> str | None:
    token = text(value)
    if token is None:
        return None
    try:
        parts = urlsplit(token)
        host = parts.hostname
    except ValueError:
        host = None
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not host
        or any(c.isspace() for c in token)
    ):
        raise Invalid(
            f"{token!r} is not an http(s) URL with a host",
            "نشانی باید یک نشانی http یا https با نام میزبان باشد",
        )
    return token


def json_object(value: Any) -> dict[str, Any] | None:
    if is_null(value):
        return None
    if isinstance(value, str):
        value = json_text(value.strip())
    if not isinstance(value, dict):
        raise Invalid("must be a JSON object (a JSON Schema)", "باید یک شیء JSON باشد")
    return value


_JALALI_PERIOD = re.compile(r"(1[34][0-9]{2})(?:\s*[-/ ]?\s*[Qq]\s*([1-4]))?")


def jalali_period(label: str) -> tuple[int | None, int | None]:
    """The Jalali year and quarter of a REPORT's period label (``1403``, ``1403-Q2``), if it is one.

    Gregorian labels (``2013-Q1``, ``2023-2024``) and others give ``(None, None)``.
    """
    match = _JALALI_PERIOD.fullmatch(to_latin_digits(label.strip()))
    if match is None:
        return None, None
    return int(match.group(1)), int(match.group(2)) if match.group(2) else None
