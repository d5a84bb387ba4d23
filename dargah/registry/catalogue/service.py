"""The catalogue's storage rules: the only module that writes public services and their reports.

An import is planned first (what is new, changed or unchanged, by reading only), then
applied inside the caller's transaction. Cards are upserted by ``service_id``: the card
as imported replaces the stored one, so importing the same file twice changes nothing.
Agencies are members: a missing one is added, an existing one gets the names, parent and
website the file gives (fields the file leaves empty are kept).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from dargah.core.clock import now_rfc3339
from dargah.registry import audit, members
from dargah.registry.audit import Action
from dargah.registry.catalogue.coerce import jalali_period
from dargah.registry.catalogue.models import LIST_FIELDS, REPORT_COUNTS, STEPS
from dargah.store.tables import (
    catalogue_agencies,
    public_service_reports,
    public_services,
)
from dargah.store.tables import (
    members as members_table,
)

CHUNK = 500
_TEXT = (
    "title_fa",
    "title_en",
    "description_fa",
    "description_en",
    "cluster",
    "submit_to",
    "status",
    "url",
)
_INTS = ("in_person_visits", "fee_rials", "time_limit_days", "declared_level")
_JSON = (*LIST_FIELDS, "documents", "form")
Tick = Callable[[str, int, int], None]


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _load(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


def card_row(card: dict[str, Any], member_id: str) -> dict[str, Any]:
    """A CARD as a ``public_services`` row (without its timestamps)."""
    row: dict[str, Any] = {
        "service_id": card["service_id"],
        "member_id": member_id,
        "agency_legal_id": card["agency_legal_id"],
    }
    row.update({name: card.get(name) for name in (*_TEXT, *_INTS)})
    row.update({name: _dump(card.get(name)) for name in _JSON})
    row.update({f"steps_{s}": (card.get("steps") or {}).get(s) for s in STEPS})
    row["paper_required"] = card.get("paper_required")
    row["extra"] = _dump(card.get("extra") or {})
    return row


def report_rows(card: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for position, rep in enumerate(card.get("reported") or []):
        year, quarter = jalali_period(rep["period"])
        rows.append(
            {
                "service_id": card["service_id"],
                "position": position,
                "period": rep["period"],
                "jalali_year": year,
                "jalali_quarter": quarter,
                **{k: rep.get(k) for k in (*REPORT_COUNTS, "satisfaction_pct")},
                "extra": _dump(rep.get("extra") or {}),
            }
        )
    return rows


def row_card(row: dict[str, Any], reports: list[dict[str, Any]]) -> dict[str, Any]:
    """A stored row (and its report rows) as a CARD, in the JSON shape of catalogue.md."""
    card: dict[str, Any] = {
        "service_id": row["service_id"],
        "agency_legal_id": row["agency_legal_id"],
    }
    for name in ("title_fa", "title_en", "description_fa", "description_en"):
        card[name] = row[name]
    card["recipients"] = _load(row["recipients"])
    card["cluster"] = row["cluster"]
    card["life_events"] = _load(row["life_events"])
    card["channels"] = _load(row["channels"])
    card["steps"] = {s: row[f"steps_{s}"] for s in STEPS}
    card["in_person_visits"] = row["in_person_visits"]
    card["paper_required"] = row["paper_required"]
    for name in ("documents", "data_sources", "proactive_topics", "form"):
        card[name] = _load(row[name])
    for name in ("submit_to", "fee_rials", "time_limit_days", "declared_level"):
        card[name] = row[name]
    card["reported"] = [
        {
            "period": r["period"],
            **{k: r[k] for k in (*REPORT_COUNTS, "satisfaction_pct")},
            **(_load(r["extra"]) or {}),
        }
        for r in sorted(reports, key=lambda r: r["position"])
    ] or None
    card["status"] = row["status"]
    card["url"] = row["url"]
    card["extra"] = _load(row["extra"]) or {}
    return card


def registry_agencies(conn: Connection) -> dict[str, dict[str, Any]]:
    """Members by legal ID (the first by member id when a legal ID has several classes)."""
    out: dict[str, dict[str, Any]] = {}
    for row in conn.execute(select(members_table).order_by(members_table.c.id)).mappings():
        out.setdefault(row["legal_id"], dict(row))
    return out


@dataclass
class Plan:
    new_agencies: list[dict[str, Any]] = field(default_factory=list)
    changed_agencies: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    updated_agencies: int = 0
    same_agencies: int = 0
    extras: dict[str, str] = field(default_factory=dict)  # member id -> extra (JSON), to write
    member_of: dict[str, str] = field(default_factory=dict)  # legal id -> member id
    new_cards: list[dict[str, Any]] = field(default_factory=list)
    changed_cards: list[dict[str, Any]] = field(default_factory=list)
    same_cards: int = 0
    reports: list[dict[str, Any]] = field(default_factory=list)


def _agency_after(member: dict[str, Any], agency: dict[str, Any]) -> dict[str, Any]:
    after = dict(member)
    if agency["name_fa"]:
        after["name"] = agency["name_fa"]
    elif agency["name_en"] and member["name"] == member["name_en"]:
        after["name"] = agency["name_en"]  # the name was the English one: follow it
    for name in ("name_en", "parent_legal_id", "website"):
        if agency[name] is not None:
            after[name] = agency[name]
    return after


def _plan_agencies(
    conn: Connection,
    plan: Plan,
    agencies: list[dict[str, Any]],
    registry: dict[str, dict[str, Any]],
    instance: str,
) -> None:
    plan.member_of = {legal: m["id"] for legal, m in registry.items()}
    stored = {r.member_id: r.extra for r in conn.execute(select(catalogue_agencies))}
    for agency in agencies:
        member = registry.get(agency["legal_id"])
        if member is None:
            member_id = f"{instance}/{agency['member_class'] or 'GOV'}/{agency['legal_id']}"
            plan.new_agencies.append({**agency, "id": member_id})
            changed = False
        else:
            member_id = member["id"]
            after = _agency_after(member, agency)
            changed = after != member
            if changed:
                plan.changed_agencies.append((member, after))
        plan.member_of[agency["legal_id"]] = member_id
        extra = _dump(agency["extra"]) if agency["extra"] else stored.get(member_id)
        if extra is not None and extra != stored.get(member_id):
            plan.extras[member_id] = extra
            changed = True
        if member is not None:
            plan.updated_agencies += changed
            plan.same_agencies += not changed


def _stored_reports(conn: Connection, ids: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    cols = [c for c in public_service_reports.c if c.name != "id"]
    for chunk in _chunks(ids):
        q = select(*cols).where(public_service_reports.c.service_id.in_(chunk))
        for r in conn.execute(q.order_by(public_service_reports.c.position)).mappings():
            out.setdefault(r["service_id"], []).append(tuple(r[c.name] for c in cols))
    return out


def plan_import(
    conn: Connection,
    agencies: list[dict[str, Any]],
    cards: list[dict[str, Any]],
    registry: dict[str, dict[str, Any]],
    instance: str,
) -> Plan:
    """What writing these (valid) agencies and cards would change; reads only."""
    plan = Plan()
    _plan_agencies(conn, plan, agencies, registry, instance)
    ids = [c["service_id"] for c in cards]
    stored: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(ids):
        q = select(public_services).where(public_services.c.service_id.in_(chunk))
        stored.update({r["service_id"]: dict(r) for r in conn.execute(q).mappings()})
    stored_reports = _stored_reports(conn, [i for i in ids if i in stored])
    cols = [c.name for c in public_service_reports.c if c.name != "id"]
    for card in cards:
        row = card_row(card, plan.member_of[card["agency_legal_id"]])
        reports = report_rows(card)
        before = stored.get(card["service_id"])
        if before is None:
            plan.new_cards.append(row)
        elif any(before[k] != v for k, v in row.items()) or stored_reports.get(
            card["service_id"], []
        ) != [tuple(r[c] for c in cols) for r in reports]:
            plan.changed_cards.append(row)
        else:
            plan.same_cards += 1
            continue
        plan.reports.extend(reports)
    return plan


def _executemany(
    conn: Connection,
    stmt: Any,
    rows: list[dict[str, Any]],
    stage: str,
    tick: Tick,
    done: list[int],
    total: int,
) -> None:
    for i in range(0, len(rows), CHUNK):
        part = rows[i : i + CHUNK]
        conn.execute(stmt, part)
        done[0] += len(part)
        tick(stage, done[0], total)


def apply_plan(
    conn: Connection, plan: Plan, actor: str, summary: dict[str, Any], tick: Tick | None = None
) -> None:
    """Write a plan in the caller's transaction, with one audit entry for the import."""
    tick = tick or (lambda *_: None)
    now = now_rfc3339()
    for agency in plan.new_agencies:
        members.add_member(
            conn, agency["id"], agency["name_fa"] or agency["name_en"], actor, agency["name_en"]
        )
        if agency["parent_legal_id"] or agency["website"]:
            conn.execute(
                update(members_table)
                .where(members_table.c.id == agency["id"])
                .values(parent_legal_id=agency["parent_legal_id"], website=agency["website"])
            )
    for before, after in plan.changed_agencies:
        conn.execute(
            update(members_table)
            .where(members_table.c.id == before["id"])
            .values(**{k: after[k] for k in ("name", "name_en", "parent_legal_id", "website")})
        )
        audit.record(conn, actor, Action.MEMBER_UPDATE, before["id"], before, after, bump=False)
    if plan.extras:
        for chunk in _chunks(list(plan.extras)):
            conn.execute(
                delete(catalogue_agencies).where(catalogue_agencies.c.member_id.in_(chunk))
            )
        conn.execute(
            insert(catalogue_agencies),
            [{"member_id": m, "extra": e, "updated_at": now} for m, e in plan.extras.items()],
        )
    total = len(plan.new_cards) + len(plan.changed_cards) + len(plan.reports)
    done = [0]
    new = [{**r, "created_at": now, "updated_at": now} for r in plan.new_cards]
    _executemany(conn, insert(public_services), new, "writing", tick, done, total)
    changed_ids = [r["service_id"] for r in plan.changed_cards]
    for chunk in _chunks(changed_ids):
        conn.execute(
            delete(public_service_reports).where(public_service_reports.c.service_id.in_(chunk))
        )
    stmt = update(public_services).where(public_services.c.service_id == bindparam("b_id"))
    changed = [
        {
            **{k: v for k, v in r.items() if k != "service_id"},
            "b_id": r["service_id"],
            "updated_at": now,
        }
        for r in plan.changed_cards
    ]
    _executemany(conn, stmt, changed, "writing", tick, done, total)
    _executemany(conn, insert(public_service_reports), plan.reports, "writing", tick, done, total)
    audit.record(conn, actor, Action.CATALOGUE_IMPORT, "catalogue", None, summary)


def card_owners(conn: Connection, service_ids: list[str]) -> dict[str, str]:
    """The agency (legal ID) each of the stored ``service_ids`` belongs to; reads only."""
    out: dict[str, str] = {}
    t = public_services.c
    for chunk in _chunks(service_ids):
        q = select(t.service_id, t.agency_legal_id).where(t.service_id.in_(chunk))
        out.update({r.service_id: r.agency_legal_id for r in conn.execute(q)})
    return out


def load_cards(conn: Connection) -> Iterable[dict[str, Any]]:
    """Every stored card, by service ID, in the JSON shape (with ``member_id`` beside it)."""
    reports: dict[str, list[dict[str, Any]]] = {}
    for r in conn.execute(select(public_service_reports)).mappings():
        reports.setdefault(r["service_id"], []).append(dict(r))
    q = select(public_services).order_by(public_services.c.service_id)
    for row in conn.execute(q).mappings():
        yield row_card(dict(row), reports.get(row["service_id"], []))


def load_agencies(conn: Connection) -> list[dict[str, Any]]:
    """Every member as an AGENCY (catalogue.md), with the extra fields an import kept."""
    extras = {r.member_id: _load(r.extra) for r in conn.execute(select(catalogue_agencies))}
    out = []
    for m in conn.execute(select(members_table).order_by(members_table.c.legal_id)).mappings():
        out.append(
            {
                "legal_id": m["legal_id"],
                "name_fa": m["name"] if m["name"] != m["name_en"] else None,
                "name_en": m["name_en"],
                "member_class": m["member_class"],
                "parent_legal_id": m["parent_legal_id"],
                "website": m["website"],
                "extra": extras.get(m["id"]) or {},
            }
        )
    return out
