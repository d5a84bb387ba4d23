"""Persian normalisation makes variant spellings meet, and Jalali dates read right."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dargah.core.jalali import format_date, format_datetime, from_jalali
from dargah.core.persian import compact, normalize, to_latin_digits, to_persian_digits


@pytest.mark.parametrize(
    "variant", ["گواهی‌نامه", "گواهی نامه", "گواهينامه", "گواهینامه", "گواهی‌نامـه"]
)
def test_variant_spellings_of_one_word_meet_in_compact_form(variant: str) -> None:
    assert compact(variant) == "گواهینامه"


def test_arabic_kaf_and_yeh_become_persian() -> None:
    assert normalize("كارت ملي") == "کارت ملی"


def test_diacritics_are_removed() -> None:
    assert normalize("مُدیرِیَّت") == "مدیریت"


def test_persian_and_arabic_digits_become_latin() -> None:
    assert normalize("۱۲۳٤٥٦") == "123456"
    assert to_latin_digits("کد ۰۹۱۲") == "کد 0912"


def test_latin_text_is_lower_cased_and_spaces_collapse() -> None:
    assert normalize("  Driving   LICENCE ") == "driving licence"


@given(st.text())
def test_normalize_is_idempotent_and_never_fails(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once


def test_plan_dates_convert_both_ways() -> None:
    assert from_jalali(1403, 1, 1) == date(2024, 3, 20)
    assert from_jalali(1407, 12, 29) == date(2029, 3, 19)
    assert format_date(date(2024, 3, 20)) == "۱۴۰۳/۰۱/۰۱"
    assert format_date(date(2024, 3, 20), long=True) == "۱ فروردین ۱۴۰۳"


def test_times_are_shown_in_tehran_time_with_persian_digits() -> None:
    assert format_datetime(datetime(2024, 3, 20, 0, 0, tzinfo=UTC)) == "۱۴۰۳/۰۱/۰۱ ۰۳:۳۰"
    assert to_persian_digits(2024) == "۲۰۲۴"
