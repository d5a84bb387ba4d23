"""The public-service card form: a stored card as form values, and form values onto a card.

Only the form's fields are replaced; every other field of a stored card (recipients, the
reports, the form schema, extra fields, ...) is kept as stored. Values are passed on as the
text the user wrote: checking them is the catalogue validation's job (validate.py).
"""

from __future__ import annotations

import re
from typing import Any

from dargah.registry.catalogue.models import CHANNELS, STATUSES, STEPS

CHANNEL_FA = {
    "online": "برخط",
    "in_person": "حضوری",
    "phone": "تلفنی",
    "mail": "پستی",
    "kiosk": "باجه",
    "app": "برنامهٔ همراه",
}
STEP_FA = {
    "sign_in_online": "ورود برخط",
    "apply_online": "درخواست برخط",
    "pay_online": "پرداخت برخط",
    "decision_online": "تصمیم برخط",
    "issue_online": "صدور برخط",
    "track_online": "پیگیری برخط",
}
FIELD_FA = {
    "service_id": "شناسهٔ خدمت",
    "agency_legal_id": "دستگاه",
    "title_fa": "عنوان فارسی",
    "title_en": "عنوان انگلیسی",
    "description_fa": "شرح",
    "cluster": "خوشه",
    "life_events": "رویدادهای زندگی",
    "channels": "مجراها",
    "in_person_visits": "مراجعهٔ حضوری",
    "documents": "مدارک",
    "data_sources": "منابع داده",
    "fee_rials": "هزینه (ریال)",
    "time_limit_days": "مهلت انجام (روز)",
    "declared_level": "سطح اعلام‌شده",
    "status": "وضعیت",
    **{f"steps.{s}": fa for s, fa in STEP_FA.items()},
}
_TEXT = ("title_fa", "title_en", "description_fa", "cluster")
_NUMBERS = ("in_person_visits", "fee_rials", "time_limit_days", "declared_level")
_LINES = re.compile(r"[\r\n]+")
_WORDS = re.compile(r"[\s,،]+")


def _value(form: dict[str, str], name: str) -> str | None:
    value = (form.get(name) or "").strip()
    return value or None


def _documents(text: str | None) -> list[dict[str, Any]] | None:
    """One document a line: ``name | data item | source`` (the last two optional)."""
    if not text:
        return None
    out = []
    for line in _LINES.split(text):
        parts = [p.strip() for p in line.split("|")]
        if not parts[0]:
            continue
        parts += [""] * 3
        out.append(
            {
                "name_fa": parts[0],
                "name_en": None,
                "data_item": parts[1] or None,
                "source": parts[2] or None,
            }
        )
    return out or None


def apply(
    card: dict[str, Any], form: dict[str, str], service_id: str, legal_id: str
) -> dict[str, Any]:
    """``card`` (the stored one, or empty) with the form's fields in it, for the import."""
    out = {k: v for k, v in card.items() if v is not None}
    out["service_id"] = service_id
    out["agency_legal_id"] = legal_id
    for name in (*_TEXT, *_NUMBERS, "status"):
        out[name] = _value(form, name)
    events = _value(form, "life_events")
    out["life_events"] = [e.strip() for e in _LINES.split(events) if e.strip()] if events else None
    chosen = [c for c in CHANNELS if form.get(f"channel_{c}")]
    out["channels"] = chosen or None
    out["steps"] = {s: bool(form.get(f"step_{s}")) for s in STEPS}
    out["documents"] = _documents(_value(form, "documents"))
    sources = _value(form, "data_sources")
    out["data_sources"] = [s for s in _WORDS.split(sources) if s] if sources else None
    return {k: v for k, v in out.items() if v is not None}


def _documents_text(documents: list[dict[str, Any]] | None) -> str:
    lines = []
    for d in documents or []:
        parts = [d.get("name_fa") or d.get("name_en") or "", d.get("data_item") or ""]
        if d.get("source") and d["source"] != "citizen":
            parts.append(d["source"])
        lines.append(" | ".join(parts).rstrip(" |"))
    return "\n".join(lines)


def context(
    card: dict[str, Any] | None,
    member: str,
    owners: list[dict[str, Any]],
    may_change: bool,
    *,
    stored: bool,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """What card.html needs: the card's values as form text, and the errors by field."""
    card = card or {}
    steps = card.get("steps") or {}
    values = {
        name: "" if card.get(name) is None else str(card[name]) for name in (*_TEXT, *_NUMBERS)
    }
    values["status"] = card.get("status") or "active"
    values["life_events"] = "\n".join(card.get("life_events") or [])
    values["data_sources"] = "\n".join(card.get("data_sources") or [])
    values["documents"] = _documents_text(card.get("documents"))
    return {
        "card": card,
        "service_id": card.get("service_id") or "",
        "stored": stored,
        "member": member,
        "owners": owners,
        "may_change": may_change,
        "values": values,
        "channels": [(c, CHANNEL_FA[c], c in (card.get("channels") or [])) for c in CHANNELS],
        "steps": [(s, STEP_FA[s], bool(steps.get(s))) for s in STEPS],
        "statuses": STATUSES,
        "errors": [
            {**e, "label": FIELD_FA.get(e.get("field") or "", e.get("field"))} for e in errors or []
        ],
        "field_fa": FIELD_FA,
    }
