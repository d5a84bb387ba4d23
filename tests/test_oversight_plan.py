"""The 7th Plan target, the expected number today, standing and projection (smartness.md)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from dargah.core.jalali import from_jalali
from dargah.oversight import agency_progress, expected_now, project, standing, target_at_year_end
from dargah.oversight.plan import PLAN_END, PLAN_START, year_end


@pytest.mark.parametrize(
    ("n", "targets"),
    [
        (0, [0, 0, 0, 0, 0]),
        (1, [1, 1, 1, 1, 1]),
        (7, [2, 3, 5, 6, 7]),
        (10, [2, 4, 6, 8, 10]),
        (23, [5, 10, 14, 19, 23]),
    ],
)
def test_targets_at_each_year_end(n: int, targets: list[int]) -> None:
    assert [target_at_year_end(n, k) for k in range(1, 6)] == targets


def test_target_of_an_exact_multiple_is_not_rounded_up_by_float_error() -> None:
    assert target_at_year_end(5, 3) == 3  # 0.2 * 3 * 5 = 3.0000000000000004 in floats


def test_plan_dates() -> None:
    assert (PLAN_START, PLAN_END) == (date(2024, 3, 20), date(2029, 3, 19))
    assert year_end(1) == from_jalali(1403, 12, 30)
    assert year_end(5) == PLAN_END
    with pytest.raises(ValueError):
        target_at_year_end(10, 6)


def test_expected_now_at_the_start_year_ends_and_mid_year() -> None:
    assert expected_now(10, PLAN_START) == 0
    assert expected_now(10, PLAN_START - timedelta(days=30)) == 0
    for k in range(1, 6):
        assert expected_now(10, year_end(k)) == pytest.approx(target_at_year_end(10, k))
    assert expected_now(23, PLAN_END) == 23
    assert expected_now(23, PLAN_END + timedelta(days=400)) == 23
    mid1 = PLAN_START + (year_end(1) - PLAN_START) / 2
    assert expected_now(10, mid1) == pytest.approx(1.0, abs=0.01)
    mid3 = year_end(2) + (year_end(3) - year_end(2)) / 2
    assert expected_now(10, mid3) == pytest.approx(5.0, abs=0.01)
    assert expected_now(0, mid3) == 0


def test_expected_now_grows_monotonically() -> None:
    days = [PLAN_START + timedelta(days=d) for d in range(0, 1900, 7)]
    values = [expected_now(23, d) for d in days]
    assert values == sorted(values)


@pytest.mark.parametrize(
    ("smart", "expected", "result"),
    [
        (5, 5.0, "on-track"),
        (6, 5.0, "on-track"),  # +1
        (4, 5.0, "on-track"),  # -1
        (7, 5.0, "ahead"),
        (3, 5.0, "behind"),
        (105, 100.0, "on-track"),  # +5%
        (95, 100.0, "on-track"),  # -5%
        (106, 100.0, "ahead"),
        (94, 100.0, "behind"),
        (0, 0.0, "on-track"),
        (2, 0.5, "ahead"),
    ],
)
def test_standing_boundaries(smart: int, expected: float, result: str) -> None:
    assert standing(smart, expected) == result


def test_projection_of_a_straight_line_is_exact() -> None:
    start = PLAN_START
    history = [(start + timedelta(days=d), d / 10) for d in (0, 100, 200, 300)]
    assert project(history, start + timedelta(days=1000)) == pytest.approx(100.0)
    assert project(list(reversed(history)), start + timedelta(days=500)) == pytest.approx(50.0)


def test_projection_is_least_squares() -> None:
    d0 = date(2025, 1, 1)
    history = [(d0, 0.0), (d0 + timedelta(days=1), 2.0), (d0 + timedelta(days=2), 1.0)]
    # slope 0.5 per day through the mean (day 1, 1.0)
    assert project(history, d0 + timedelta(days=5)) == pytest.approx(3.0)


def test_projection_with_fewer_than_two_points_is_the_current_value() -> None:
    assert project([]) == 0
    assert project([(date(2025, 1, 1), 4.0)]) == 4.0
    assert project([(date(2025, 1, 1), 4.0), (date(2025, 1, 1), 6.0)]) == 6.0


def test_agency_progress() -> None:
    today = year_end(2)
    history = [(PLAN_START, 0.0), (year_end(1), 2.0)]
    got = agency_progress(10, 4, today, history, agency="10100387143")
    assert got["agency"] == "10100387143"
    assert (got["n_services"], got["smart"]) == (10, 4)
    assert [(t["year"], t["target"]) for t in got["targets"]] == [
        (1403, 2),
        (1404, 4),
        (1405, 6),
        (1406, 8),
        (1407, 10),
    ]
    assert got["targets"][-1]["ends"] == "2029-03-19"
    assert got["expected"] == pytest.approx(4.0)
    assert got["standing"] == "on-track"
    assert got["projection"] == pytest.approx(10.0, abs=0.1)
    behind = agency_progress(10, 0, today)
    assert (behind["standing"], behind["projection"]) == ("behind", 0.0)
