"""The 7th Development Plan target (smartness.md) and an agency's progress toward it.

The plan runs from 1403/01/01 (2024-03-20) to 1407/12/29 (2029-03-19). For N active public
services, the target at the end of plan year k (k = 1..5, Jalali years 1403..1407) is
ceil(0.2 · k · N) smart services; between year ends the expected number grows linearly with
elapsed days, from 0 at the plan start.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from dargah.core.jalali import from_jalali

FIRST_YEAR = 1403
YEARS = 5
PLAN_START = from_jalali(FIRST_YEAR, 1, 1)
PLAN_END = from_jalali(FIRST_YEAR + YEARS - 1, 12, 29)


def year_end(k: int) -> date:
    """The last day of plan year ``k`` (1..5); ``year_end(0)`` is the plan start."""
    if not 0 <= k <= YEARS:
        raise ValueError(f"plan year {k} is outside 0..{YEARS}")
    if k == 0:
        return PLAN_START
    return from_jalali(FIRST_YEAR + k, 1, 1) - timedelta(days=1)


def target_at_year_end(n_services: int, k: int) -> int:
    """Smart services due at the end of plan year ``k``: ceil(0.2 · k · N) (0 for k = 0)."""
    if not 0 <= k <= YEARS:
        raise ValueError(f"plan year {k} is outside 0..{YEARS}")
    if n_services < 0:
        raise ValueError("the number of services cannot be negative")
    # integer arithmetic: 0.2 · k · N = k · N / 5, without float rounding (e.g. 0.2·3·5)
    return -(-k * n_services // 5)


def expected_now(n_services: int, today: date) -> float:
    """Smart services expected on ``today``: 0 at the plan start, the year's target on the last
    day of each plan year, linear in elapsed days in between (N after the plan)."""
    if today <= PLAN_START:
        return 0.0
    for k in range(1, YEARS + 1):
        start, end = year_end(k - 1), year_end(k)
        if today <= end:
            low, high = target_at_year_end(n_services, k - 1), target_at_year_end(n_services, k)
            return low + (high - low) * (today - start).days / (end - start).days
    return float(target_at_year_end(n_services, YEARS))


def standing(smart: float, expected: float) -> str:
    """``ahead``, ``on-track`` or ``behind``.

    On track means within ±1 service or ±5% of the expected number, whichever is wider
    (|smart − expected| ≤ max(1, 0.05 · expected)); above that band is ahead, below it behind.
    """
    band = max(1.0, 0.05 * expected)
    if abs(smart - expected) <= band:
        return "on-track"
    return "ahead" if smart > expected else "behind"


def project(history: Sequence[tuple[date, float]], end: date = PLAN_END) -> float:
    """Smart services projected on ``end`` by a least-squares line through ``history``.

    With fewer than two points (or all on one day), the latest value (0 with none).
    """
    if not history:
        return 0.0
    points = sorted(history)
    xs = [float((d - PLAN_START).days) for d, _ in points]
    ys = [float(v) for _, v in points]
    n = len(points)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if n < 2 or sxx == 0:
        return ys[-1]
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my + slope * ((end - PLAN_START).days - mx)


def agency_progress(
    n_services: int,
    smart_now: int,
    today: date,
    history: Sequence[tuple[date, float]] = (),
    *,
    agency: str | None = None,
) -> dict[str, Any]:
    """One agency's (or the nation's) progress toward the 7th Plan target.

    ``history`` is the measured number of smart services by date; today's count is added to
    it for the projection.
    """
    expected = expected_now(n_services, today)
    points = [*(p for p in history if p[0] != today), (today, float(smart_now))]
    projection = project(points)
    return {
        "agency": agency,
        "n_services": n_services,
        "smart": smart_now,
        "targets": [
            {
                "year": FIRST_YEAR + k - 1,
                "ends": year_end(k).isoformat(),
                "target": target_at_year_end(n_services, k),
            }
            for k in range(1, YEARS + 1)
        ],
        "expected": round(expected, 2),
        "standing": standing(smart_now, expected),
        "projection": round(projection, 2),
        "projected_standing": standing(projection, float(n_services)),
        "plan_end": PLAN_END.isoformat(),
    }
