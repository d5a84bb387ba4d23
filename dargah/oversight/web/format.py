"""How the dashboard writes a value for people: Persian digits, percentages, rials."""

from __future__ import annotations

from typing import Any

from dargah.core.persian import to_persian_digits
from dargah.web.pages import fa_number

SHARES = {"measured", "reported", "gap", "share"}


def percent(value: Any) -> str:
    """A share (0..1) as ``۸۱٫۵٪``; ``—`` when there is none."""
    if value is None:
        return "—"
    return fa_number(round(float(value) * 100, 1)) + "٪"


def kpi_value(kpi: str, value: Any) -> str:
    if value is None:
        return "—"
    if kpi == "cost_per_transaction":
        return fa_number(round(float(value))) + " ریال"
    return percent(value)


def cell_text(key: str, value: Any, kpi: str | None = None) -> str:
    """A table cell as shown: shares as percentages, numbers with Persian digits."""
    if value is None or value == "":
        return "—"
    if key in SHARES and kpi is not None:
        return kpi_value(kpi, value)
    if key == "share":
        return percent(value)
    if isinstance(value, bool):
        return "بله" if value else "خیر"
    if isinstance(value, int | float):
        return fa_number(value)
    return to_persian_digits(str(value)) if key in {"month", "level"} else str(value)
