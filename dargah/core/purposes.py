"""Purposes of use (``GSB-Purpose``) common to every instance, with their Persian titles.

Grants name the purposes a client may call a service for; these are the ones the national
catalogue and the sandbox use, and how pages name them to citizens. An instance may grant
others: a page shows an unknown purpose by its code.
"""

from __future__ import annotations

PURPOSES: dict[str, str] = {
    "identity-verification": "احراز هویت",
    "benefit-eligibility": "بررسی استحقاق دریافت حمایت",
    "tax-assessment": "تشخیص و وصول مالیات",
    "vehicle-transfer": "نقل و انتقال وسیله نقلیه",
    "service-application": "رسیدگی به درخواست خدمت",
}


def purpose_title(code: str | None) -> str:
    """The Persian title of a purpose, or its code when it has none."""
    return PURPOSES.get(code or "", code or "—")
