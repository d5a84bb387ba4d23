"""Violations of the once-only and no-direct-connection rules, each with its evidence and fix.

Three kinds of finding, each naming the service, the evidence and the fix in Persian and
English:

- ``once-only``: an active public service asks citizens for a document (``source ==
  "citizen"``) whose ``data_item`` an active bus service ``supplies`` (the data catalogue of
  authentic sources).
- ``direct-connection``: an active public service declares ``data_sources``, has had
  applications (platform or reported), yet the message log shows not one successful bus call
  to any of them: its data reaches it some other way.
- ``unasserted-calls``: a provider reported that its bus service received calls without a
  valid ``GSB-Assertion`` (table ``unasserted_calls``): someone reaches it outside the bus.
  The public services that declare it as a data source are named with it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select

from dargah.core.clock import now_rfc3339, utc_now
from dargah.core.errors import BadRequest, NotFound
from dargah.core.identifiers import InvalidIdentifier, parse_service_id
from dargah.oversight.evidence import Evidence, gather
from dargah.registry import audit
from dargah.registry.audit import Action
from dargah.store.oversight_tables import unasserted_calls
from dargah.store.tables import public_services, services

KINDS = ("once-only", "direct-connection", "unasserted-calls")
KIND_NAMES = {
    "once-only": ("once-only", "یک‌بار پرسش"),
    "direct-connection": ("direct connection", "اتصال مستقیم"),
    "unasserted-calls": ("calls without a GSB-Assertion", "فراخوانی بدون امضای گذرگاه"),
}


@dataclass(frozen=True)
class Finding:
    """One violation: which service, what shows it, what fixes it."""

    kind: str
    service_id: str
    member_id: str
    title: str
    evidence_en: str
    evidence_fa: str
    fix_en: str
    fix_fa: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["details"] = dict(self.details)
        return out


def suppliers(conn: Connection) -> dict[str, list[str]]:
    """Data item → the active bus services that supply it (the authentic sources)."""
    out: dict[str, list[str]] = {}
    q = select(services.c.id, services.c.supplies).where(services.c.status == "active")
    for sid, supplies in conn.execute(q):
        for item in json.loads(supplies) if supplies else []:
            out.setdefault(str(item), []).append(sid)
    return {k: sorted(v) for k, v in out.items()}


def _cards(conn: Connection) -> list[Any]:
    p = public_services.c
    q = (
        select(p.service_id, p.member_id, p.title_fa, p.title_en, p.documents, p.data_sources)
        .where(p.status == "active")
        .order_by(p.service_id)
    )
    return list(conn.execute(q))


def _title(card: Any) -> str:
    return str(card.title_fa or card.title_en or card.service_id)


def once_only(conn: Connection, cards: list[Any] | None = None) -> list[Finding]:
    """Documents asked of citizens that a bus service supplies."""
    supplied = suppliers(conn)
    out: list[Finding] = []
    for card in _cards(conn) if cards is None else cards:
        docs = json.loads(card.documents) if card.documents else []
        for doc in docs if isinstance(docs, list) else []:
            if not isinstance(doc, dict) or doc.get("source") != "citizen":
                continue
            item = doc.get("data_item")
            sources = supplied.get(str(item)) if item else None
            if not sources:
                continue
            name_fa = doc.get("name_fa") or doc.get("name_en") or item
            name_en = doc.get("name_en") or doc.get("name_fa") or item
            where = ", ".join(sources)
            out.append(
                Finding(
                    "once-only",
                    card.service_id,
                    card.member_id,
                    _title(card),
                    f"citizens must bring “{name_en}” ({item}), which {where} supplies on the bus",
                    f"شهروند باید «{name_fa}» ({item}) را بیاورد، حال آنکه {where} آن را روی گذرگاه می‌دهد",
                    f"fetch {item} from {where} over the bus with the citizen's consent, pre-fill "
                    "it on the form (x-data-item) and drop the document from the card",
                    f"دادهٔ {item} را با رضایت شهروند از {where} روی گذرگاه بگیرید، در فرم "
                    "پیش‌پر کنید و این مدرک را از شناسنامهٔ خدمت بردارید",
                    {"document": name_en, "data_item": item, "suppliers": sources},
                )
            )
    return out


def direct_connection(cards: list[Any], evidence: Mapping[str, Evidence]) -> list[Finding]:
    """Services with applications whose declared data sources never saw a bus call."""
    out: list[Finding] = []
    for card in cards:
        e = evidence.get(card.service_id)
        if e is None or not e.direct_connection:
            continue
        where = ", ".join(e.data_sources)
        apps = e.applications_online
        out.append(
            Finding(
                "direct-connection",
                card.service_id,
                card.member_id,
                _title(card),
                f"{apps} online application(s), yet not one successful bus call to its data "
                f"sources {where} in the message log",
                f"{apps} درخواست برخط ثبت شده، اما هیچ فراخوانی موفقی از منابع داده {where} "
                "در سابقهٔ پیام‌های گذرگاه نیست",
                "call the data sources through the bus (grant, token, /r1/) and close any "
                "direct link to the source agency's systems",
                "منابع داده را از راه گذرگاه فراخوانی کنید (مجوز، توکن، ‎/r1/‎) و هر پیوند "
                "مستقیم به سامانه‌های دستگاه منبع را ببندید",
                {"data_sources": list(e.data_sources), "applications": apps},
            )
        )
    return out


def unasserted(conn: Connection, cards: list[Any] | None = None) -> list[Finding]:
    """One finding per bus service whose provider reported calls without a valid assertion."""
    u = unasserted_calls.c
    q = (
        select(u.service_id, u.member_id, func.sum(u.calls), func.count(), func.max(u.last_seen))
        .group_by(u.service_id, u.member_id)
        .order_by(u.service_id)
    )
    users: dict[str, list[str]] = {}
    for card in _cards(conn) if cards is None else cards:
        for source in json.loads(card.data_sources) if card.data_sources else []:
            users.setdefault(str(source), []).append(card.service_id)
    out: list[Finding] = []
    for sid, member, calls, n_reports, last in conn.execute(q):
        dependants = users.get(sid, [])
        also = f"; public services relying on it: {', '.join(dependants)}" if dependants else ""
        also_fa = f"؛ خدمت‌های وابسته: {', '.join(dependants)}" if dependants else ""
        out.append(
            Finding(
                "unasserted-calls",
                sid,
                member,
                sid,
                f"the provider reported {int(calls)} call(s) without a valid GSB-Assertion "
                f"in {n_reports} report(s){also}",
                f"ارائه‌دهنده {int(calls)} فراخوانی بدون GSB-Assertion معتبر در {n_reports} "
                f"گزارش اعلام کرده است{also_fa}",
                "the provider must refuse every call without a valid GSB-Assertion; the caller "
                "must be found and moved onto the bus, and the direct network path closed",
                "ارائه‌دهنده باید هر فراخوانی بدون GSB-Assertion معتبر را رد کند؛ فراخوان‌کننده "
                "شناسایی و به گذرگاه منتقل شود و مسیر مستقیم شبکه بسته شود",
                {
                    "calls": int(calls),
                    "reports": int(n_reports),
                    "last_seen": last,
                    "public_services": dependants,
                },
            )
        )
    return out


def find_all(
    conn: Connection,
    now: datetime | None = None,
    evidence: Mapping[str, Evidence] | None = None,
) -> list[Finding]:
    """Every finding, by kind (once-only, direct connection, unasserted calls)."""
    cards = _cards(conn)
    ev = gather(conn, now or utc_now()) if evidence is None else evidence
    return [
        *once_only(conn, cards),
        *direct_connection(cards, ev),
        *unasserted(conn, cards),
    ]


def report_unasserted(
    conn: Connection,
    actor: str,
    *,
    service: str,
    calls: int,
    first_seen: str | None = None,
    last_seen: str | None = None,
    source: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """Record a provider's report of calls without a valid ``GSB-Assertion`` on ``service``."""
    try:
        parsed = parse_service_id(service)
    except InvalidIdentifier as exc:
        raise BadRequest(f"service: {exc}", "شناسهٔ خدمت نامعتبر است") from None
    sid = str(parsed)
    if conn.execute(select(services.c.id).where(services.c.id == sid)).first() is None:
        raise NotFound(f"no bus service {sid}", f"خدمت {sid} یافت نشد")
    row = {
        "service_id": sid,
        "member_id": str(parsed.subsystem.member),
        "calls": calls,
        "first_seen": first_seen,
        "last_seen": last_seen,
        "source": source,
        "note": note,
        "reported_by": actor,
        "reported_at": now_rfc3339(),
    }
    new_id = conn.execute(insert(unasserted_calls).values(**row)).inserted_primary_key
    out = {"id": int(new_id[0]) if new_id else None, **row}
    audit.record(conn, actor, Action.UNASSERTED_CALLS_REPORT, sid, None, out, bump=False)
    return out


def unasserted_reports(conn: Connection) -> list[dict[str, Any]]:
    q = select(unasserted_calls).order_by(unasserted_calls.c.id.desc())
    return [dict(r) for r in conn.execute(q).mappings()]
