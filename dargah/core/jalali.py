"""Jalali (Solar Hijri) dates for people: conversion and formatting with Persian digits."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import jdatetime

from dargah.core.persian import to_persian_digits

TEHRAN = ZoneInfo("Asia/Tehran")
MONTHS = (
    "فروردین",
    "اردیبهشت",
    "خرداد",
    "تیر",
    "مرداد",
    "شهریور",
    "مهر",
    "آبان",
    "آذر",
    "دی",
    "بهمن",
    "اسفند",
)


def to_jalali(day: date | datetime) -> jdatetime.date:
    if isinstance(day, datetime):
        day = day.astimezone(TEHRAN).date() if day.tzinfo else day.date()
    return jdatetime.date.fromgregorian(date=day)


def from_jalali(year: int, month: int, day: int) -> date:
    return jdatetime.date(year, month, day).togregorian()  # type: ignore[no-any-return]


def format_date(day: date | datetime, *, persian_digits: bool = True, long: bool = False) -> str:
    """``1403/12/11`` (or ``۱۱ اسفند ۱۴۰۳`` when ``long``), in Persian digits by default."""
    j = to_jalali(day)
    text = (
        f"{j.day} {MONTHS[j.month - 1]} {j.year}"
        if long
        else f"{j.year:04d}/{j.month:02d}/{j.day:02d}"
    )
    return to_persian_digits(text) if persian_digits else text


def format_datetime(moment: datetime, *, persian_digits: bool = True) -> str:
    """Date and Tehran time, e.g. ``۱۴۰۵/۰۹/۰۶ ۰۱:۱۱``."""
    local = moment.astimezone(TEHRAN) if moment.tzinfo else moment
    text = f"{format_date(local, persian_digits=False)} {local:%H:%M}"
    return to_persian_digits(text) if persian_digits else text
