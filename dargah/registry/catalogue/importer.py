"""``import_catalogue``: read, map, validate everything, then write it all in one transaction.

Every problem of every file is collected first. When any row is bad nothing is written,
unless ``skip_invalid`` is given: then the good rows are written and the rest reported.
An import held to one ``agency`` (an agency's own upload) refuses rows of any other agency,
and cards whose service ID is already another agency's.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from dargah.registry.catalogue import derive, service
from dargah.registry.catalogue.mapping import Mapping, load_mapping
from dargah.registry.catalogue.models import (
    CARD_FIELDS,
    ImportReport,
    Kind,
    Problem,
    Record,
)
from dargah.registry.catalogue.reading import RawFile, read_file
from dargah.registry.catalogue.validate import validate_agency, validate_card
from dargah.store.db import READ_ONLY

Progress = Callable[[str, int, int], None]
_CARD_ONLY = (set(CARD_FIELDS) - {"url"}) | {
    "documents.name_fa",
    "documents.name_en",
    "reported.period",
}
_AGENCY_ONLY = {"legal_id", "name_fa", "name_en", "member_class", "parent_legal_id", "website"}


def _required(kind: Kind, fields: set[str]) -> list[str]:
    if kind == "services":
        missing = [f for f in ("service_id", "agency_legal_id") if f not in fields]
        if not fields & {"title_fa", "title_en"}:
            missing.append("title_fa or title_en")
        return missing
    missing = [] if "legal_id" in fields else ["legal_id"]
    if not fields & {"name_fa", "name_en"}:
        missing.append("name_fa or name_en")
    return missing


def _csv_kind(raw: RawFile, mapping: Mapping) -> Kind | None:
    """Whether a CSV file holds cards or agencies, told by its (mapped) header; None if neither.

    The kind whose required fields the file gives wins (cards when both do); failing that,
    the kind more of whose own fields come from the file's columns, which then lacks some.
    """
    header = raw.header or []
    kinds: tuple[Kind, ...] = ("services", "agencies")
    fields = {k: mapping.provides(k, header) for k in kinds}
    complete = [k for k in fields if not _required(k, fields[k])]
    own = {
        "services": len(mapping.provides("services", header, False) & _CARD_ONLY),
        "agencies": len(mapping.provides("agencies", header, False) & _AGENCY_ONLY),
    }
    kind: Kind
    if complete:
        kind = complete[0]
    elif own["services"] or own["agencies"]:
        kind = "services" if own["services"] >= own["agencies"] else "agencies"
    else:
        raw.fail(
            "cannot tell whether this file holds service cards or agencies: its header has "
            "neither card columns (service_id, title_fa, ...) nor agency columns (legal_id, "
            "name_fa, ...)" + (" once mapped" if mapping.sections else ""),
            "ستون‌های پرونده نه با شناسنامهٔ خدمت می‌خواند نه با دستگاه",
            1,
        )
        return None
    raw.summary.kind = kind
    missing = _required(kind, fields[kind])
    if missing:
        what = "cards" if kind == "services" else "agencies"
        raw.fail(
            f"a file of {what} must have the column(s): {', '.join(missing)}"
            + (" (after the mapping)" if mapping.sections else ""),
            f"ستون‌های لازم نیامده است: {'، '.join(missing)}",
            1,
        )
        return None
    for column in mapping.absent_columns(kind, header):
        raw.problems.append(
            Problem(
                "warning",
                raw.summary.file,
                f"the mapping names column {column!r}, which this file does not have",
                "ستونی که در نگاشت آمده در پرونده نیست",
                line=1,
            )
        )
    return kind


def _duplicates(records: list[Record], field: str) -> list[Problem]:
    where: dict[str, list[Record]] = defaultdict(list)
    for rec in records:
        if rec.key is not None:
            where[rec.key].append(rec)
    problems = []
    for key, recs in where.items():
        if len(recs) < 2:
            continue
        for rec in recs:
            others = ", ".join(
                Problem("error", o.file, "", line=o.line, path=o.path).where
                for o in recs
                if o is not rec
            )
            problems.append(
                rec.refuse(
                    field,
                    f"{field} {key} appears {len(recs)} times in this import (also at {others})",
                    f"{field} {key} تکراری است",
                    key if field == "service_id" else None,
                )
            )
    return problems


def _agency_checks(
    agencies: list[Record], cards: list[Record], registry: dict[str, dict[str, Any]]
) -> list[Problem]:
    problems = []
    in_files: dict[str, bool] = {}
    for rec in agencies:
        member = registry.get(rec.key or "")
        given = rec.values.get("member_class")
        if (
            rec.value is not None
            and member is not None
            and rec.value["member_class"] not in (None, member["member_class"])
        ):
            problems.append(
                rec.refuse(
                    "member_class",
                    f"agency {rec.key} is registered as {member['id']}; an "
                    f"import cannot change its class to {given}",
                    "ردهٔ دستگاه ثبت‌شده تغییر نمی‌کند",
                )
            )
        if rec.key is not None:
            in_files[rec.key] = in_files.get(rec.key, True) and rec.value is not None
    for rec in cards:
        if rec.ref is None:
            continue
        ok = in_files.get(rec.ref)
        if ok is None and rec.ref in registry:
            continue
        if ok is None:
            reason = (
                f"unknown agency: no agency with legal ID {rec.ref} in the files or the registry",
                f"دستگاهی با شناسهٔ ملی {rec.ref} نه در پرونده‌ها هست نه در ثبت",
            )
        elif not ok:
            reason = (
                f"agency {rec.ref} is refused in this import (see its row)",
                f"دستگاه {rec.ref} در این ورود پذیرفته نشد",
            )
        else:
            continue
        problems.append(rec.refuse("agency_legal_id", *reason, rec.key))
    return problems


def _scope_checks(
    conn: Connection, agencies: list[Record], cards: list[Record], legal_id: str
) -> list[Problem]:
    """Rows outside the one agency an import is held to, and cards already another's."""
    problems = []
    for rec in agencies:
        if rec.key is not None and rec.key != legal_id:
            problems.append(
                rec.refuse(
                    "legal_id",
                    f"this import is for agency {legal_id} only, not {rec.key}",
                    f"این بارگذاری فقط برای دستگاه {legal_id} است",
                )
            )
    owners = service.card_owners(conn, [r.key for r in cards if r.key])
    for rec in cards:
        owner = owners.get(rec.key or "")
        if rec.ref is not None and rec.ref != legal_id:
            reason = (
                f"this import is for agency {legal_id} only; the card names {rec.ref}",
                f"این بارگذاری فقط برای دستگاه {legal_id} است، نه {rec.ref}",
            )
        elif owner is not None and owner != legal_id:
            reason = (
                f"service {rec.key} is already registered by agency {owner}",
                f"خدمت {rec.key} پیش‌تر به نام دستگاه دیگری ثبت شده است",
            )
        else:
            continue
        problems.append(rec.refuse("agency_legal_id", *reason, rec.key))
    return problems


def _validate(records: list[Record], report: ImportReport, tick: Progress) -> None:
    unknown: Counter[tuple[str, str, str]] = Counter()
    for i, rec in enumerate(records, 1):
        if rec.values or not rec.errors:
            check = validate_card if rec.kind == "services" else validate_agency
            problems, fields = check(rec)
            report.problems += problems
            unknown.update((rec.file, rec.kind, f) for f in fields)
        if i % 500 == 0 or i == len(records):
            tick("validating", i, len(records))
    for (file, kind, name), count in sorted(unknown.items()):
        what = "a card field" if kind == "services" else "an agency field"
        report.problems.append(
            Problem(
                "warning",
                file,
                f"{name!r} is not {what}: kept in extra ({count} row(s))",
                f"«{name}» فیلد شناخته‌شده‌ای نیست و در extra نگه داشته شد",
                field=name,
            )
        )


def _order(files: list[str]) -> Callable[[Problem], tuple[int, int, str, int]]:
    """Problems in the order of the files, then of their lines or JSON items."""
    index = {name: i for i, name in enumerate(files)}

    def key(p: Problem) -> tuple[int, int, str, int]:
        kind, _, item = (p.path or "").partition("[")
        number = int(item.rstrip("]")) if item.rstrip("]").isdigit() else -1
        return index.get(p.file, len(index)), p.line or 0, kind, number

    return key


def import_catalogue(
    engine: Engine,
    paths: Sequence[Path | str],
    *,
    mapping: Mapping | Path | str | None = None,
    dry_run: bool = False,
    skip_invalid: bool = False,
    actor: str,
    instance: str,
    progress: Progress | None = None,
    agency: str | None = None,
) -> ImportReport:
    """Import catalogue files (JSON or CSV) into the instance: see docs/catalogue.md.

    ``agency`` (a legal ID) holds the import to that agency's own rows and cards.
    """
    started = time.perf_counter()
    tick: Progress = progress or (lambda *_: None)
    if not isinstance(mapping, Mapping):
        mapping = load_mapping(Path(mapping)) if mapping is not None else Mapping()
    report = ImportReport(dry_run=dry_run)
    records: list[Record] = []
    for i, path in enumerate(paths, 1):
        raw = read_file(Path(path), str(path))
        report.files.append(raw.summary)
        if raw.header is not None:
            kind = _csv_kind(raw, mapping)
            for rec in raw.records:
                rec.kind = kind or "services"
        report.problems += raw.problems
        for rec in raw.records:
            if rec.values:  # a JSON item that is not an object has none: nothing to map
                rec.values = mapping.apply(rec.kind, rec.values)
        records += raw.records
        tick("reading", i, len(paths))
    report.problems += derive.resolve(mapping.namespace, records)
    _validate(records, report, tick)
    agencies = [r for r in records if r.kind == "agencies"]
    cards = [r for r in records if r.kind == "services"]
    report.problems += _duplicates(agencies, "legal_id") + _duplicates(cards, "service_id")
    # One transaction: the registry read for the checks is the one the writes go to. A dry
    # run only reads, so on SQLite it does not take the write lock.
    with (
        engine.connect().execution_options(**(READ_ONLY if dry_run else {})) as conn,
        conn.begin() as tx,
    ):
        registry = service.registry_agencies(conn)
        report.problems += _agency_checks(agencies, cards, registry)
        if agency is not None:
            report.problems += _scope_checks(conn, agencies, cards, agency)
        report.agencies_refused = sum(1 for r in agencies if r.errors)
        report.services_refused = sum(1 for r in cards if r.errors)
        refused = bool(report.errors) and not skip_invalid
        if dry_run or not refused:
            plan = service.plan_import(
                conn,
                [r.value for r in agencies if r.value],
                [r.value for r in cards if r.value],
                registry,
                instance,
            )
            report.agencies_created = len(plan.new_agencies)
            report.agencies_updated = plan.updated_agencies
            report.agencies_unchanged = plan.same_agencies
            report.services_created = len(plan.new_cards)
            report.services_updated = len(plan.changed_cards)
            report.services_unchanged = plan.same_cards
        if dry_run or refused:
            tx.rollback()
        else:
            summary = {
                "files": [f.file for f in report.files],
                "dry_run": False,
                **{
                    k: getattr(report, k)
                    for k in (
                        "agencies_created",
                        "agencies_updated",
                        "services_created",
                        "services_updated",
                        "services_unchanged",
                        "services_refused",
                    )
                },
            }
            service.apply_plan(conn, plan, actor, summary, tick)
            tx.commit()
            report.written = True
    report.problems.sort(key=_order([f.file for f in report.files]))
    report.seconds = time.perf_counter() - started
    return report
