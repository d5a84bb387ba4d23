"""The dashboard's tables, one definition each, shown on the page and exported as CSV or XLSX.

A :class:`Table` is a title, Persian column headers with machine keys, and rows; the page
renders the same rows the exports write, so a downloaded file is what the citizen saw.
CSV is UTF-8 with a BOM (so that spreadsheet programs read Persian right), XLSX a sheet laid
out right to left.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from openpyxl import Workbook

from dargah.oversight.kpis import KPI_NAMES
from dargah.oversight.overview import NATION, Overview
from dargah.oversight.violations import KIND_NAMES

STANDING_FA = {"ahead": "جلوتر از برنامه", "on-track": "مطابق برنامه", "behind": "عقب‌تر از برنامه"}
LEVEL_FA = ("۰ برون‌خط", "۱ اطلاع‌رسانی", "۲ تعاملی", "۳ تمام‌برخط", "۴ یکپارچه", "۵ پیش‌نگر")


@dataclass
class Table:
    name: str
    title: str
    columns: list[tuple[str, str]]  # (key, Persian header)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def csv_bytes(self) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([header for _, header in self.columns])
        writer.writerow([key for key, _ in self.columns])
        for row in self.rows:
            writer.writerow(
                ["" if row.get(k) is None else _inert(row.get(k)) for k, _ in self.columns]
            )
        return ("\ufeff" + out.getvalue()).encode("utf-8")

    def xlsx_bytes(self) -> bytes:
        book = Workbook()
        sheet = book.active or book.create_sheet()
        sheet.title = self.name[:31]
        sheet.sheet_view.rightToLeft = True
        sheet.append([header for _, header in self.columns])
        sheet.append([key for key, _ in self.columns])
        for row in self.rows:
            sheet.append([_cell(row.get(k)) for k, _ in self.columns])
        for line in sheet.iter_rows(min_row=3):
            for cell in line:
                if cell.data_type == "f":  # agency-provided text that looks like a formula
                    cell.data_type = "s"
        out = io.BytesIO()
        book.save(out)
        return out.getvalue()


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _inert(value: Any) -> Any:
    """Text a spreadsheet would run as a formula, made plain text (a leading apostrophe)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, int | float | str):
        return value
    return str(value)


def agencies(ov: Overview) -> Table:
    t = Table(
        "agencies",
        "پیشرفت دستگاه‌ها در برابر هدف برنامهٔ هفتم",
        [
            ("legal_id", "شناسهٔ ملی"),
            ("name", "دستگاه"),
            ("n_services", "خدمات فعال"),
            ("smart", "خدمات هوشمندِ شمرده‌شده"),
            ("expected", "انتظار امروز"),
            ("standing", "وضعیت"),
            ("projection", "پیش‌بینی پایان برنامه"),
            ("violations", "تخلف‌ها"),
            ("member_id", "شناسهٔ عضو"),
        ],
    )
    for a in ov.agencies():
        p = a["progress"]
        t.rows.append(
            {
                "legal_id": a["legal_id"],
                "name": a["name"],
                "n_services": a["n_services"],
                "smart": a["smart"],
                "expected": p["expected"],
                "standing": STANDING_FA[p["standing"]],
                "projection": p["projection"],
                "violations": sum(a["violations"].values()),
                "member_id": a["member_id"],
            }
        )
    return t


def levels(ov: Overview, scope: str = NATION) -> Table:
    s = ov.summary(scope)
    t = Table(
        "levels",
        "توزیع سطح هوشمندی",
        [("level", "سطح"), ("verified", "تأییدشده"), ("declared", "اعلام‌شده")],
    )
    for level in range(6):
        t.rows.append(
            {
                "level": LEVEL_FA[level],
                "verified": s["verified_levels"][level],
                "declared": s["declared_levels"][level],
            }
        )
    return t


def kpis(ov: Overview, scope: str = NATION) -> Table:
    t = Table(
        "kpis",
        "شاخص‌های کلیدی: سنجیده در برابر گزارش‌شده",
        [
            ("name_fa", "شاخص"),
            ("measured", "سنجیدهٔ درگاه"),
            ("reported", "گزارش دستگاه"),
            ("gap", "فاصله"),
            ("kpi", "کد"),
        ],
    )
    t.rows = [dict(r) for r in ov.kpis(scope)]
    return t


def violations(ov: Overview, scope: str = NATION) -> Table:
    t = Table(
        "violations",
        "تخلف‌ها",
        [
            ("kind_fa", "نوع"),
            ("service_id", "خدمت"),
            ("title", "عنوان"),
            ("evidence_fa", "شاهد"),
            ("fix_fa", "راه رفع"),
            ("kind", "kind"),
            ("evidence_en", "evidence"),
            ("fix_en", "fix"),
        ],
    )
    for f in ov.findings_of(scope):
        t.rows.append({**f.as_dict(), "kind_fa": KIND_NAMES[f.kind][1]})
    return t


def satisfaction(ov: Overview, scope: str = NATION) -> Table:
    t = Table(
        "satisfaction",
        "رضایت کاربران در هر ماه",
        [("month", "ماه"), ("ratings", "امتیازها"), ("satisfied", "۴ یا ۵"), ("share", "سهم")],
    )
    t.rows = ov.satisfaction_by_month(scope)
    return t


def duplicates(ov: Overview, scope: str = NATION) -> Table:
    d = ov.summary(scope)["duplicates"]
    t = Table(
        "duplicates",
        "خدمات تکراری",
        [("confirmed", "تأییدشده"), ("candidates", "نامزد"), ("candidates_day", "روز شمارش")],
    )
    t.rows = [dict(d)]
    return t


def services(ov: Overview, scope: str) -> Table:
    t = Table(
        "services",
        "خدمات دستگاه",
        [
            ("service_id", "شناسهٔ خدمت"),
            ("title", "عنوان"),
            ("declared_level", "سطح اعلام‌شده"),
            ("verified_level", "سطح تأییدشده"),
            ("counted", "شمرده می‌شود"),
            ("reasons", "دلیل‌ها"),
        ],
    )
    for s in sorted(ov.active(scope), key=lambda s: s.service_id):
        t.rows.append(
            {
                "service_id": s.service_id,
                "title": s.title,
                "declared_level": s.declared_level,
                "verified_level": s.verified_level,
                "counted": "بله" if s.counted else "خیر",
                "reasons": " | ".join(s.reasons),
            }
        )
    return t


NATIONAL = ("agencies", "levels", "kpis", "violations", "satisfaction", "duplicates")
AGENCY = ("services", "levels", "kpis", "violations", "satisfaction", "duplicates")
_BUILDERS: dict[str, Callable[[Overview, str], Table]] = {
    "levels": levels,
    "kpis": kpis,
    "violations": violations,
    "satisfaction": satisfaction,
    "duplicates": duplicates,
    "services": services,
}


def table(ov: Overview, name: str, scope: str = NATION) -> Table | None:
    """The named table of the nation or of one agency; ``None`` when there is no such table."""
    if scope == NATION:
        if name not in NATIONAL:
            return None
        return agencies(ov) if name == "agencies" else _BUILDERS[name](ov, scope)
    if name not in AGENCY:
        return None
    return _BUILDERS[name](ov, scope)


def kpi_label(kpi: str) -> str:
    return KPI_NAMES[kpi][1]
