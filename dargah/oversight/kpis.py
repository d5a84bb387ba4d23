"""The four KPIs of smartness.md, as the platform measures them and as the agencies report them.

Per public service, per agency and national, each KPI has a *measured* value, a *reported*
value and their *gap* (measured − reported):

- **satisfaction**: share of ratings of 4 or 5. Measured: the portal's ratings made in the
  window. Reported: the report's ``satisfaction_pct``.
- **completion rate**: completed / started applications. Measured: the platform's
  applications (portal and proactive) started in the window, and how many of them have a
  ``completed_at``. Reported: ``completed`` / ``started``.
- **digital take-up**: online / all applications. Measured: the platform's applications over
  those plus the report's in-person and other applications (the platform cannot see a
  counter; agencies report those counts). Reported: ``applications_online`` over the sum of
  the three counts.
- **cost per transaction** (rials): the report's ``cost_total_rials`` (or
  ``cost_per_transaction_rials`` × its transactions when no total is given) over all
  transactions. Measured: over the platform's applications plus the report's in-person and
  other ones. Reported: ``cost_per_transaction_rials`` as given (else total / reported
  transactions).

Every figure is a ratio kept as numerator and denominator, so that an agency's and the
nation's values are sums of their services' figures, not averages of averages. The reported
satisfaction of several services is weighted by their reported applications (1 when none).

The window: a chosen Jalali period (``1403``, ``1403-Q2``) is both the reported period and the
measured window; with no period, each service's latest report is compared with the last 90
days.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection, case, func, select

from dargah.core.clock import rfc3339
from dargah.core.jalali import TEHRAN, from_jalali
from dargah.core.persian import to_latin_digits
from dargah.registry.catalogue.coerce import jalali_period
from dargah.store.people_tables import applications, ratings
from dargah.store.tables import public_service_reports

WINDOW_DAYS = 90
KPIS = ("satisfaction", "completion", "digital_take_up", "cost_per_transaction")
KPI_NAMES = {
    "satisfaction": ("user satisfaction", "رضایت کاربران"),
    "completion": ("completion rate", "نرخ تکمیل"),
    "digital_take_up": ("digital take-up", "سهم درخواست برخط"),
    "cost_per_transaction": ("cost per transaction (rials)", "هزینهٔ هر تراکنش (ریال)"),
}


@dataclass(frozen=True)
class Window:
    """Measured figures cover ``start`` ≤ t < ``end`` (UTC)."""

    start: datetime
    end: datetime
    period: str | None = None

    @property
    def bounds(self) -> tuple[str, str]:
        return rfc3339(self.start), rfc3339(self.end)


def _tehran_midnight(day: date) -> datetime:
    return datetime.combine(day, time(), TEHRAN).astimezone(UTC)


def period_window(period: str) -> Window | None:
    """The dates of a Jalali year or quarter label, ``None`` for any other label."""
    year, quarter = jalali_period(period)
    if year is None:
        return None
    if quarter is None:
        start, end = from_jalali(year, 1, 1), from_jalali(year + 1, 1, 1)
    else:
        first = 3 * (quarter - 1) + 1
        start = from_jalali(year, first, 1)
        end = from_jalali(year + 1, 1, 1) if quarter == 4 else from_jalali(year, first + 3, 1)
    return Window(_tehran_midnight(start), _tehran_midnight(end), period)


def window_for(now: datetime, period: str | None = None) -> Window:
    """The chosen period's dates when it is a Jalali one, else the last 90 days."""
    if period:
        chosen = period_window(period)
        if chosen is not None:
            return chosen
    return Window(now - timedelta(days=WINDOW_DAYS), now, period)


@dataclass
class Figures:
    """Numerators and denominators of one service's KPIs (or a sum of services')."""

    ratings: int = 0
    satisfied: int = 0
    started: int = 0
    completed: int = 0
    offline: int = 0  # reported in-person and other applications, when reported
    offline_known: int = 0  # applications of services that reported their offline count
    cost: float = 0.0  # reported cost, rials
    cost_transactions: int = 0  # measured transactions of services that reported a cost
    rep_sat: float = 0.0
    rep_sat_weight: float = 0.0
    rep_started: int = 0
    rep_completed: int = 0
    rep_online: int = 0
    rep_all: int = 0
    rep_cost: float = 0.0
    rep_cost_transactions: int = 0
    period: str | None = None

    def add(self, other: Figures) -> None:
        for f in fields(self):
            if f.name != "period":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def values(self) -> dict[str, tuple[float | None, float | None]]:
        """Each KPI as (measured, reported); ``None`` where there is nothing to divide by."""
        return {
            "satisfaction": (
                _div(self.satisfied, self.ratings),
                _div(self.rep_sat, self.rep_sat_weight),
            ),
            "completion": (
                _div(self.completed, self.started),
                _div(self.rep_completed, self.rep_started),
            ),
            "digital_take_up": (
                _div(self.offline_known, self.offline_known + self.offline)
                if self.offline_known + self.offline
                else None,
                _div(self.rep_online, self.rep_all),
            ),
            "cost_per_transaction": (
                _div(self.cost, self.cost_transactions),
                _div(self.rep_cost, self.rep_cost_transactions),
            ),
        }

    def rows(self) -> list[dict[str, Any]]:
        """The KPIs as rows ``{kpi, name_en, name_fa, measured, reported, gap}``."""
        out = []
        for kpi, (measured, reported) in self.values().items():
            en, fa = KPI_NAMES[kpi]
            gap = None if measured is None or reported is None else measured - reported
            out.append(
                {
                    "kpi": kpi,
                    "name_en": en,
                    "name_fa": fa,
                    "measured": _round(measured),
                    "reported": _round(reported),
                    "gap": _round(gap),
                }
            )
        return out


def _div(num: float, den: float) -> float | None:
    return num / den if den else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def total(items: Iterable[Figures]) -> Figures:
    out = Figures()
    for f in items:
        out.add(f)
    return out


def _period_key(row: Any) -> tuple[int, int, int, int]:
    year, quarter = row.jalali_year, row.jalali_quarter
    return (year is not None, year or 0, quarter or 0, row.position)


def _reports(conn: Connection, period: str | None) -> dict[str, Any]:
    """The report row of each service: the chosen period's, or its latest."""
    r = public_service_reports.c
    q = select(public_service_reports)
    if period:
        wanted = {period, to_latin_digits(period)}
        q = q.where(r.period.in_(sorted(wanted)))
    out: dict[str, Any] = {}
    for row in conn.execute(q):
        best = out.get(row.service_id)
        if best is None or _period_key(row) > _period_key(best):
            out[row.service_id] = row
    return out


def _measured(conn: Connection, window: Window) -> dict[str, tuple[int, int, int, int]]:
    """(ratings, satisfied, started, completed) by service, within the window."""
    start, end = window.bounds
    out: dict[str, list[int]] = {}
    rt = ratings.c
    q = (
        select(rt.service_id, func.count(), func.sum(case((rt.score >= 4, 1), else_=0)))
        .where(rt.created_at >= start, rt.created_at < end)
        .group_by(rt.service_id)
    )
    for sid, n, ok in conn.execute(q):
        out.setdefault(sid, [0, 0, 0, 0])[0:2] = [int(n), int(ok or 0)]
    a = applications.c
    q = (
        select(a.service_id, func.count(), func.count(a.completed_at))
        .where(a.created_at >= start, a.created_at < end)
        .group_by(a.service_id)
    )
    for sid, n, done in conn.execute(q):
        out.setdefault(sid, [0, 0, 0, 0])[2:4] = [int(n), int(done)]
    return {sid: (v[0], v[1], v[2], v[3]) for sid, v in out.items()}


def _n(value: Any) -> int:
    return int(value) if value is not None else 0


def figures_of(measured: tuple[int, int, int, int], report: Any) -> Figures:
    """One service's figures from its measured counts and its report row (or ``None``)."""
    n_ratings, satisfied, started, completed = measured
    f = Figures(ratings=n_ratings, satisfied=satisfied, started=started, completed=completed)
    if report is None:
        return f
    f.period = report.period
    online, in_person, other = (
        report.applications_online,
        report.applications_in_person,
        report.applications_other,
    )
    reported_all = _n(online) + _n(in_person) + _n(other)
    if in_person is not None or other is not None:
        f.offline, f.offline_known = _n(in_person) + _n(other), started
    cpt = report.cost_per_transaction_rials
    cost: float | None = None
    if report.cost_total_rials is not None:
        cost = float(report.cost_total_rials)
    elif cpt is not None and reported_all:
        cost = float(cpt) * reported_all
    if cost is not None and started + f.offline:
        f.cost, f.cost_transactions = cost, started + f.offline
    if cpt is not None:
        weight = reported_all or 1
        f.rep_cost, f.rep_cost_transactions = float(cpt) * weight, weight
    elif cost is not None and reported_all:
        f.rep_cost, f.rep_cost_transactions = cost, reported_all
    if report.satisfaction_pct is not None:
        share = float(reported_all or 1)
        f.rep_sat, f.rep_sat_weight = report.satisfaction_pct / 100 * share, share
    if report.completed is not None and report.started:
        f.rep_completed, f.rep_started = int(report.completed), int(report.started)
    if online is not None and reported_all:
        f.rep_online, f.rep_all = int(online), reported_all
    return f


@dataclass
class KpiTable:
    """Every service's figures for one window (and reported period)."""

    window: Window
    by_service: dict[str, Figures] = field(default_factory=dict)

    def of(self, service_ids: Iterable[str]) -> Figures:
        return total(self.by_service[s] for s in service_ids if s in self.by_service)


def measure_kpis(
    conn: Connection, service_ids: Iterable[str], now: datetime, period: str | None = None
) -> KpiTable:
    """The figures of each of ``service_ids`` in the window of ``period`` (see the module)."""
    window = window_for(now, period)
    reports = _reports(conn, period)
    measured = _measured(conn, window)
    table = KpiTable(window)
    for sid in service_ids:
        table.by_service[sid] = figures_of(measured.get(sid, (0, 0, 0, 0)), reports.get(sid))
    return table
