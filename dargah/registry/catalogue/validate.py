"""Checking one mapped record, field by field, and turning it into a typed AGENCY or CARD.

Every problem of the record is collected, not just the first. Rules that need the other
records (duplicates, the agency of a card) are in importer.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dargah.core.identifiers import InvalidIdentifier, is_legal_id, parse_service_id, parse_topic_id
from dargah.registry.catalogue import coerce
from dargah.registry.catalogue.coerce import Invalid, to_latin_digits
from dargah.registry.catalogue.models import (
    CHANNELS,
    CLASSES,
    COMPUTED_FIELDS,
    DOCUMENT_KEYS,
    OBJECT_LISTS,
    RECIPIENTS,
    REPORT_COUNTS,
    STATUSES,
    STEPS,
    Problem,
    Record,
)
from dargah.registry.services import DATA_ITEM_RE

Reader = Callable[[Any], Any]


def _bus_id(value: Any, what: str = "service id") -> str | None:
    token = coerce.text(value)
    if token is None:
        return None
    try:
        (parse_topic_id if what == "topic id" else parse_service_id)(token)
    except InvalidIdentifier as exc:
        raise Invalid(
            f"{token!r} is not a bus {what}: {exc.detail}", f"«{token}» شناسهٔ معتبر گذرگاه نیست"
        ) from None
    return token


def _bus_ids(what: str) -> Reader:
    def read(value: Any) -> list[str] | None:
        items = coerce.str_list(value)
        return None if items is None else [str(_bus_id(i, what)) for i in items]

    return read


def _legal_id(value: Any) -> str | None:
    token = coerce.text(
        str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    )
    if token is None:
        return None
    token = to_latin_digits(token)
    if not is_legal_id(token):
        raise Invalid(
            f"{token!r} is not a valid national legal ID (11 digits with a valid check digit)",
            f"«{token}» شناسهٔ ملی معتبر نیست",
        )
    return token


def _service_id(value: Any) -> str | None:
    token = coerce.text(
        str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    )
    if token is None:
        return None
    token = to_latin_digits(token)
    if not (len(token) == 11 and token.isascii() and token.isdigit()):
        raise Invalid(
            f"{token!r} is not a public service ID (11 digits)",
            f"«{token}» شناسهٔ خدمت (۱۱ رقم) نیست",
        )
    return token


CARD_READERS: dict[str, Reader] = {
    "title_fa": coerce.text,
    "title_en": coerce.text,
    "description_fa": coerce.text,
    "description_en": coerce.text,
    "recipients": lambda v: coerce.enum_list(v, RECIPIENTS),
    "cluster": coerce.text,
    "life_events": coerce.str_list,
    "channels": lambda v: coerce.enum_list(v, CHANNELS),
    "in_person_visits": coerce.integer,
    "paper_required": coerce.boolean,
    "data_sources": _bus_ids("service id"),
    "proactive_topics": _bus_ids("topic id"),
    "form": coerce.json_object,
    "submit_to": _bus_id,
    "fee_rials": coerce.integer,
    "time_limit_days": coerce.integer,
    "declared_level": lambda v: coerce.integer(v, 0, 5),
    "status": lambda v: coerce.enum(v, STATUSES),
    "url": coerce.url,
    **{f"steps.{s}": coerce.boolean for s in STEPS},
}
AGENCY_READERS: dict[str, Reader] = {
    "name_fa": coerce.text,
    "name_en": coerce.text,
    "member_class": lambda v: coerce.enum(v, CLASSES),
    "parent_legal_id": _legal_id,
    "website": coerce.url,
}


def _objects(values: dict[str, Any], name: str) -> list[Any] | None:
    """A list of objects: the field (JSON or JSON text), or dotted CSV columns ('|' aligned)."""
    keys = OBJECT_LISTS[name]
    dotted = {k: values.pop(f"{name}.{k}") for k in keys if f"{name}.{k}" in values}
    whole = values.pop(name, None)
    columns = {k: v for k, v in dotted.items() if not coerce.is_null(v)}
    if columns and not coerce.is_null(whole):
        raise Invalid(
            f"give {name} either as one column or as {name}.* columns, not both",
            "هم ستون یکجا و هم ستون‌های جزء آمده است",
        )
    if columns:
        split = {
            k: [p.strip() for p in str(v).split(coerce.LIST_SEP)] if isinstance(v, str) else [v]
            for k, v in columns.items()
        }
        sizes = {len(v) for v in split.values()}
        if len(sizes) > 1:
            detail = ", ".join(f"{name}.{k} has {len(v)}" for k, v in split.items())
            raise Invalid(
                f"the {name}.* columns do not have the same number of items ({detail})",
                "تعداد اقلام ستون‌های جزء برابر نیست",
            )
        return [
            {k: (split[k][i] if k in split else None) for k in keys} for i in range(sizes.pop())
        ]
    if coerce.is_null(whole):
        return None
    if isinstance(whole, str):
        whole = coerce.json_text(whole.strip())
    if not isinstance(whole, list):
        raise Invalid(
            f"{name} must be a list of objects (JSON), or {name}.* columns",
            "باید فهرستی از شیءها باشد",
        )
    return whole


def _document(doc: Any, warn: Callable[[str], None]) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise Invalid(
            "each document is an object {name_fa, name_en, data_item, source}",
            "هر مدرک باید یک شیء باشد",
        )
    out: dict[str, Any] = {k: coerce.text(doc.get(k)) for k in DOCUMENT_KEYS}
    if out["name_fa"] is None and out["name_en"] is None:
        raise Invalid("a document needs name_fa or name_en", "مدرک نام ندارد")
    if out["data_item"] is not None and not DATA_ITEM_RE.fullmatch(out["data_item"]):
        raise Invalid(
            f"data_item {out['data_item']!r} must look like 'person.identity'",
            "نام قلم داده نامعتبر است",
        )
    if out["source"] is None:
        out["source"] = "citizen"
    elif out["source"] != "citizen":
        out["source"] = _bus_id(out["source"])
    for key in sorted(set(doc) - set(DOCUMENT_KEYS)):
        if not coerce.is_null(doc[key]):
            out[key] = doc[key]
            warn(f"documents.{key}")
    return out


def _report(rep: Any, warn: Callable[[str], None]) -> dict[str, Any]:
    if not isinstance(rep, dict):
        raise Invalid(
            "each report is an object {period, applications_online, ...}",
            "هر گزارش باید یک شیء باشد",
        )
    period = coerce.text(rep.get("period"))
    if period is None or len(period) > 64:
        raise Invalid("a report needs a period label (up to 64 characters)", "دورهٔ گزارش لازم است")
    out: dict[str, Any] = {"period": period}
    for key in REPORT_COUNTS:
        out[key] = coerce.integer(rep.get(key))
    out["satisfaction_pct"] = coerce.number(rep.get("satisfaction_pct"), 0, 100)
    extra = {k: v for k, v in rep.items() if k not in out and not coerce.is_null(v)}
    for key in sorted(extra):
        warn(f"reported.{key}")
    out["extra"] = extra
    return out


def _list_of(
    values: dict[str, Any],
    name: str,
    item: Callable[[Any, Callable[[str], None]], Any],
    warn: Callable[[str], None],
) -> list[Any] | None:
    items = _objects(values, name)
    if items is None:
        return None
    out = []
    for i, raw in enumerate(items):
        try:
            out.append(item(raw, warn))
        except Invalid as exc:
            raise Invalid(f"item {i + 1}: {exc.reason}", exc.reason_fa) from None
    return out


def _extras(values: dict[str, Any], known: set[str], unknown: list[str]) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    for key, value in values.items():
        if key in known or key in COMPUTED_FIELDS or coerce.is_null(value):
            continue
        if key.startswith("extra."):
            extra[key[len("extra.") :]] = value.strip() if isinstance(value, str) else value
        else:
            extra[key] = value.strip() if isinstance(value, str) else value
            unknown.append(key)
    return extra


def validate_card(rec: Record) -> tuple[list[Problem], list[str]]:
    """Check a card; sets ``rec.value`` when it has no error. Returns problems, unknown fields."""
    values = dict(rec.values)
    problems: list[Problem] = []
    unknown: list[str] = []
    card: dict[str, Any] = {}
    raw_sid = values.get("service_id")
    try:
        sid = _service_id(raw_sid)
        rec.key = sid
    except Invalid:
        sid = raw_sid.strip()[:40] if isinstance(raw_sid, str) else None

    def error(name: str | None, reason: str, reason_fa: str = "") -> None:
        problems.append(rec.problem("error", name, reason, reason_fa, sid))

    def read(name: str, reader: Reader, required: bool = False) -> Any:
        try:
            value = reader(values.get(name))
        except Invalid as exc:
            error(name, exc.reason, exc.reason_fa)
            return None
        if value is None and required:
            error(name, f"{name} is required", "این فیلد الزامی است")
        return value

    card["service_id"] = read("service_id", _service_id, required=True)
    card["agency_legal_id"] = rec.ref = read("agency_legal_id", _legal_id, required=True)
    for name, reader in CARD_READERS.items():
        card[name] = read(name, reader)
    if card["title_fa"] is None and card["title_en"] is None:
        error(
            "title_fa",
            "a card needs title_fa or title_en",
            "عنوان خدمت (فارسی یا انگلیسی) لازم است",
        )
    card["status"] = card["status"] or "active"
    card["steps"] = {s: card.pop(f"steps.{s}") for s in STEPS}
    seen: set[str] = set()

    def warn(name: str) -> None:
        seen.add(name)

    for name, item in (("documents", _document), ("reported", _report)):
        try:
            card[name] = _list_of(values, name, item, warn)
        except Invalid as exc:
            error(name, exc.reason, exc.reason_fa)
    periods = [r["period"] for r in card.get("reported") or []]
    if len(periods) != len(set(periods)):
        error("reported", "a period appears twice in the card's reports", "دورهٔ گزارش تکراری است")
    known = {"service_id", "agency_legal_id", *CARD_READERS, "documents", "reported"}
    card["extra"] = _extras(values, known, unknown)
    unknown += sorted(seen)
    rec.errors += len(problems)
    rec.value = card if not rec.errors else None
    return problems, unknown


def validate_agency(rec: Record) -> tuple[list[Problem], list[str]]:
    """Check an agency; sets ``rec.value`` when it has no error. Returns problems, unknowns."""
    values = rec.values
    problems: list[Problem] = []
    unknown: list[str] = []
    agency: dict[str, Any] = {}
    for name, reader in (("legal_id", _legal_id), *AGENCY_READERS.items()):
        try:
            agency[name] = reader(values.get(name))
        except Invalid as exc:
            problems.append(rec.problem("error", name, exc.reason, exc.reason_fa))
            agency[name] = None
            continue
        if name == "legal_id" and agency[name] is None:
            problems.append(
                rec.problem("error", name, "legal_id is required", "شناسهٔ ملی لازم است")
            )
    if agency["name_fa"] is None and agency["name_en"] is None:
        problems.append(
            rec.problem(
                "error",
                "name_fa",
                "an agency needs name_fa or name_en",
                "نام دستگاه (فارسی یا انگلیسی) لازم است",
            )
        )
    rec.key = agency["legal_id"]
    agency["extra"] = _extras(values, {"legal_id", *AGENCY_READERS}, unknown)
    rec.errors += len(problems)
    rec.value = agency if not rec.errors else None
    return problems, unknown
