"""A realistic Persian catalogue of public services (خدمات دولت) for the sandbox and the demo.

``catalogue_fa.json`` is in the service-card format of ``catalogue.md``
(``{"agencies": [...], "services": [...]}``): 25 fictional agencies, among them
the five of :mod:`dargah.sandbox.agencies` with the same legal IDs and names,
and 110 public services whose definition levels run from 0 (in person, no
complete card) to 5 (proactive, started by the civil registration's
``birth-registered.v1`` or ``death-registered.v1`` topic). Every bus service
id it names (documents, ``data_sources``, ``submit_to``, ``proactive_topics``)
is a sandbox service or topic on the instance ``DEV``.

The catalogue deliberately holds the same service offered by two agencies
under variant spellings (:data:`INTENDED_DUPLICATES`) and pairs of services
that differ only in their object (:data:`OBJECT_ONLY_NEAR_MISSES`), for the
duplicate finder and search to be tested against.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

__all__ = [
    "CLUSTERS",
    "INTENDED_DUPLICATES",
    "LIFE_EVENTS",
    "OBJECT_ONLY_NEAR_MISSES",
    "SEED_FILE",
    "cluster_titles",
    "life_event_titles",
    "load_seed_catalogue",
]

SEED_FILE = "catalogue_fa.json"
"""The catalogue's file name inside the :mod:`dargah.sandbox` package."""

INTENDED_DUPLICATES: tuple[tuple[str, str], ...] = (
    # صدور کارت ملی هوشمند (ثبت احوال) / صدور كارت ملي هوشمند (وزارت کشور): Arabic kaf and yeh
    ("20700000001", "20100000001"),
    # صدور گواهی عدم سوء پیشینه (قوه قضاییه) / صدور گواهي عدم سوء پيشينه (پلیس +۱۰): Arabic yeh
    ("20500000001", "22500000001"),
    # استعلام وضعیت بیمه (تأمین اجتماعی) / استعلام وضعيت بيمه (دولت همراه): Arabic yeh
    ("21400000001", "20200000002"),
    # استعلام و پرداخت خلافی خودرو (راهور) / ... خلافيِ خودرو (دولت همراه): Arabic yeh and a kasra
    ("21000000003", "20200000001"),
    # تمدید گواهی‌نامه رانندگی (راهور) / تمدید گواهی نامه رانندگی (پلیس +۱۰): ZWNJ vs space
    ("21000000002", "22500000002"),
    # ثبت شرکت با مسئولیت محدود (ثبت اسناد) / ثبت شركت با مسئولیت‌محدود (صمت): kaf, space vs ZWNJ
    ("21800000001", "21300000002"),
    # صدور مجوز کسب‌وکار (اقتصاد) / صدور مجوز کسب و کار (صمت): ZWNJ vs spaced «و»
    ("20300000001", "21300000001"),
    # ثبت‌نام آزمون سراسری ۱۴۰۴ (سنجش) / ثبت نام آزمون سراسری 1404 (وزارت علوم): ZWNJ, digits
    ("21900000001", "20600000001"),
)
"""The same public service offered by two agencies under variant spellings: pairs of
``service_id``; both titles have the same :func:`dargah.core.persian.compact` form."""

OBJECT_ONLY_NEAR_MISSES: tuple[tuple[str, str], ...] = (
    ("22100000001", "22200000001"),  # پرداخت قبض برق / پرداخت قبض گاز
    ("20700000001", "22300000001"),  # صدور کارت ملی هوشمند / صدور کارت سوخت
    ("21600000002", "21600000003"),  # صدور گواهی ولادت / صدور گواهی فوت
    ("21000000002", "22400000002"),  # تمدید گواهی‌نامه رانندگی / تمدید گذرنامه
    ("21900000001", "21900000002"),  # ثبت‌نام آزمون سراسری / ثبت‌نام آزمون کارشناسی ارشد
    ("21700000002", "21700000003"),  # پرداخت عوارض نوسازی / پرداخت عوارض خودرو
    ("21400000001", "20900000006"),  # استعلام وضعیت بیمه / استعلام وضعیت مؤدی مالیاتی
)
"""Pairs of ``service_id`` that share the action but not the object: different services,
never duplicates, however alike their titles read."""

LIFE_EVENTS: dict[str, tuple[str, str]] = {
    "birth": ("تولد فرزند", "Having a child"),
    "marriage": ("ازدواج", "Getting married"),
    "death": ("فوت بستگان", "Death of a relative"),
    "vehicle": ("خرید و نگهداری خودرو", "Owning a vehicle"),
    "business-start": ("راه‌اندازی کسب‌وکار", "Starting a business"),
    "education": ("تحصیل", "Education"),
    "retirement": ("بازنشستگی", "Retirement"),
    "housing": ("مسکن و اجاره", "Housing"),
    "employment": ("اشتغال و بیکاری", "Work and unemployment"),
    "health": ("سلامت و درمان", "Health"),
}
"""Life-event codes used by the catalogue's cards: (Persian title, English title)."""

CLUSTERS: dict[str, str] = {
    "هویت و ثبت احوال": "Identity and civil registration",
    "حمل و نقل": "Transport",
    "مالیات": "Taxes",
    "رفاه و تأمین اجتماعی": "Welfare and social security",
    "کسب و کار": "Business",
    "تجارت و گمرک": "Trade and customs",
    "آموزش": "Education",
    "سلامت": "Health",
    "مسکن و شهرسازی": "Housing and urban development",
    "قضایی و ثبتی": "Judiciary and registration",
    "ارتباطات و پست": "Communications and post",
    "آب، برق و گاز": "Water, electricity and gas",
    "امور عمومی و شهری": "Public and municipal affairs",
}
"""The catalogue's service clusters (Persian, as in the cards) with English titles."""


def load_seed_catalogue() -> dict[str, Any]:
    """The catalogue, parsed: ``{"agencies": [...], "services": [...]}``, a fresh copy each call."""
    text = resources.files("dargah.sandbox").joinpath(SEED_FILE).read_text(encoding="utf-8")
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{SEED_FILE} must hold a JSON object")
    return data


def life_event_titles() -> dict[str, str]:
    """Life-event code → Persian title (``birth`` → «تولد فرزند»), in display order."""
    return {code: titles[0] for code, titles in LIFE_EVENTS.items()}


def cluster_titles() -> dict[str, str]:
    """Persian cluster name (as in the cards) → English title."""
    return dict(CLUSTERS)
