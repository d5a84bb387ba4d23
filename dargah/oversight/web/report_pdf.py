"""An agency's report as PDF: Persian text shaped by HarfBuzz, right to left, in Vazirmatn.

fpdf2 with text shaping (``set_text_shaping``, which uses uharfbuzz) joins Arabic-script
letters into their contextual forms and orders a right-to-left line; the font is Vazirmatn
(OFL, ``fonts/``). Tables are the dashboard's own (:mod:`dargah.oversight.web.tables`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fpdf import FPDF

from dargah.core.jalali import format_date
from dargah.core.persian import to_persian_digits
from dargah.oversight.overview import Overview
from dargah.oversight.web import tables
from dargah.oversight.web.format import cell_text
from dargah.web.pages import fa_number

FONTS = Path(__file__).parent / "fonts"
MAX_ROWS = 200


class _Report(FPDF):
    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Vazirmatn", size=8)
        self.cell(0, 6, to_persian_digits(f"صفحهٔ {self.page_no()}"), align="C")


def _pdf() -> FPDF:
    pdf = _Report(orientation="P", unit="mm", format="A4")
    pdf.add_font("Vazirmatn", "", str(FONTS / "Vazirmatn-Regular.ttf"))
    pdf.add_font("Vazirmatn", "B", str(FONTS / "Vazirmatn-Bold.ttf"))
    pdf.set_text_shaping(use_shaping_engine=True, script="arab", language="fas")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_margins(12, 12, 12)
    pdf.add_page()
    return pdf


def _line(pdf: FPDF, text: str, size: float = 10, bold: bool = False) -> None:
    pdf.set_font("Vazirmatn", "B" if bold else "", size=size)
    pdf.multi_cell(0, size * 0.6, text, align="R", new_x="LMARGIN", new_y="NEXT")


def _table(pdf: FPDF, table: tables.Table, keys: list[str] | None = None) -> None:
    columns = [(k, h) for k, h in table.columns if keys is None or k in keys]
    _line(pdf, table.title, 12, bold=True)
    pdf.set_font("Vazirmatn", size=8)
    # right to left: the first column is drawn rightmost
    ordered = list(reversed(columns))
    with pdf.table(text_align="RIGHT", line_height=5, first_row_as_headings=True) as t:
        header = t.row()
        for _k, h in ordered:
            header.cell(h)
        for row in table.rows[:MAX_ROWS]:
            r = t.row()
            for k, _h in ordered:
                r.cell(cell_text(k, row.get(k), row.get("kpi")))
    if len(table.rows) > MAX_ROWS:
        _line(pdf, to_persian_digits(f"و {len(table.rows) - MAX_ROWS} ردیف دیگر (در خروجی CSV)"), 8)
    pdf.ln(3)


def agency_report(ov: Overview, scope: str, agency: dict[str, Any], now: datetime) -> bytes:
    """The agency's report: progress against the 7th Plan, levels, KPIs, violations, services."""
    s = ov.summary(scope)
    p = s["progress"]
    pdf = _pdf()
    _line(pdf, f"گزارش هوشمندی خدمات: {agency['name']}", 16, bold=True)
    _line(pdf, to_persian_digits(f"شناسهٔ ملی {agency['legal_id']} — تاریخ {format_date(now)}"), 9)
    pdf.ln(2)
    _line(
        pdf,
        to_persian_digits(
            f"از {s['n_services']} خدمت فعال، {s['smart']} خدمت هوشمند شمرده می‌شود؛ "
            f"انتظار برنامه تا امروز {fa_number(p['expected'])} خدمت است "
            f"({tables.STANDING_FA[p['standing']]}). "
            f"پیش‌بینی پایان برنامه: {fa_number(p['projection'])} خدمت."
        ),
        10,
    )
    pdf.ln(2)
    _table(pdf, tables.levels(ov, scope))
    _table(pdf, tables.kpis(ov, scope), ["name_fa", "measured", "reported", "gap"])
    _table(pdf, tables.violations(ov, scope), ["kind_fa", "service_id", "evidence_fa", "fix_fa"])
    _table(
        pdf,
        tables.services(ov, scope),
        ["service_id", "title", "declared_level", "verified_level", "counted"],
    )
    return bytes(pdf.output())
