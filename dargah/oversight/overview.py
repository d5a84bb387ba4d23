"""Everything oversight shows at one moment, national and per agency, from one read.

An :class:`Overview` holds each public service's verified level and whether it counts, the
four KPIs (measured and reported), the violations, duplicate counts and the history kept in
daily snapshots; :meth:`Overview.summary` gives the nation's or one agency's figures. The
dashboard, the exports, the snapshots and the API all read it, so they agree.

Only active services are counted (N of smartness.md); an agency appears when it has one.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, func, select

from dargah.core.clock import rfc3339
from dargah.core.jalali import TEHRAN, to_jalali
from dargah.oversight.evidence import gather
from dargah.oversight.kpis import KpiTable, measure_kpis
from dargah.oversight.levels import assess
from dargah.oversight.plan import agency_progress
from dargah.oversight.violations import KINDS, Finding, find_all
from dargah.store.people_tables import oversight_snapshots, ratings
from dargah.store.tables import duplicate_decisions, members, public_services

NATION = "nation"
MONTHS_SHOWN = 12


@dataclass(frozen=True)
class ServiceRow:
    service_id: str
    member_id: str
    title: str
    active: bool
    declared_level: int | None
    verified_level: int
    counted: bool
    reasons: tuple[str, ...]


@dataclass
class Overview:
    now: datetime
    kpi: KpiTable
    services: dict[str, ServiceRow]
    agencies_by_id: dict[str, dict[str, Any]]
    findings: list[Finding]
    confirmed_duplicates: dict[str, int]  # scope → confirmed pairs touching it
    snapshots: dict[str, list[tuple[date, dict[str, Any]]]] = field(default_factory=dict)
    satisfaction: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    _by_scope: dict[str, list[ServiceRow]] | None = field(default=None, repr=False)

    @property
    def today(self) -> date:
        return self.now.astimezone(TEHRAN).date()

    def window_dict(self) -> dict[str, Any]:
        w = self.kpi.window
        return {"start": rfc3339(w.start), "end": rfc3339(w.end), "period": w.period}

    def find_agency(self, key: str) -> str | None:
        """The member id of an agency given by its member id or its legal ID."""
        if key in self.agencies_by_id:
            return key
        for member_id, a in self.agencies_by_id.items():
            if a["legal_id"] == key:
                return member_id
        return None

    def active(self, scope: str | None = None) -> list[ServiceRow]:
        if self._by_scope is None:
            index: dict[str, list[ServiceRow]] = {NATION: []}
            for s in self.services.values():
                if s.active:
                    index[NATION].append(s)
                    index.setdefault(s.member_id, []).append(s)
            self._by_scope = index
        return self._by_scope.get(scope or NATION, [])

    def kpis(self, scope: str | None = None) -> list[dict[str, Any]]:
        return self.kpi.of(s.service_id for s in self.active(scope)).rows()

    def findings_of(self, scope: str | None = None) -> list[Finding]:
        if scope in (None, NATION):
            return self.findings
        return [f for f in self.findings if f.member_id == scope]

    def history(self, scope: str) -> list[tuple[date, float]]:
        """Smart services by day, from the daily snapshots."""
        return [(d, float(data.get("smart", 0))) for d, data in self.snapshots.get(scope, [])]

    def candidate_duplicates(self, scope: str) -> tuple[int | None, date | None]:
        """Candidate pairs counted by the latest snapshot (scoring every pair is too slow for
        a page), with its day; ``(None, None)`` before the first snapshot."""
        taken = self.snapshots.get(scope) or []
        for day, data in reversed(taken):
            candidates = (data.get("duplicates") or {}).get("candidates")
            if candidates is not None:
                return int(candidates), day
        return None, None

    def satisfaction_by_month(self, scope: str) -> list[dict[str, Any]]:
        months = self.satisfaction.get(scope or NATION, {})
        return [
            {"month": m, "ratings": n, "satisfied": ok, "share": round(ok / n, 4) if n else None}
            for m, (n, ok) in sorted(months.items())
        ]

    def summary(self, scope: str | None = None) -> dict[str, Any]:
        """The nation's (``None`` or ``"nation"``) or one agency's figures."""
        key = scope or NATION
        rows = self.active(key)
        verified = Counter(s.verified_level for s in rows)
        declared = Counter(s.declared_level for s in rows if s.declared_level is not None)
        smart = sum(1 for s in rows if s.counted)
        found = Counter(f.kind for f in self.findings_of(key))
        candidates, candidates_day = self.candidate_duplicates(key)
        progress = agency_progress(
            len(rows), smart, self.today, self.history(key), agency=None if key == NATION else key
        )
        return {
            "scope": key,
            "n_services": len(rows),
            "smart": smart,
            "smart_level": sum(1 for s in rows if s.verified_level >= 4),
            "verified_levels": [verified.get(level, 0) for level in range(6)],
            "declared_levels": [declared.get(level, 0) for level in range(6)],
            "progress": progress,
            "kpis": self.kpis(key),
            "violations": {kind: found.get(kind, 0) for kind in KINDS},
            "duplicates": {
                "confirmed": self.confirmed_duplicates.get(key, 0),
                "candidates": candidates,
                "candidates_day": candidates_day.isoformat() if candidates_day else None,
            },
        }

    def agencies(self) -> list[dict[str, Any]]:
        """One row per agency with an active service, by name: its summary and its names."""
        scopes = sorted({s.member_id for s in self.active()})
        out = [
            {
                **self.agencies_by_id.get(m, {"member_id": m, "legal_id": "", "name": m}),
                **self.summary(m),
            }
            for m in scopes
        ]
        return sorted(out, key=lambda a: (a["name"] or "", a["member_id"]))


def _members(conn: Connection) -> dict[str, dict[str, Any]]:
    m = members.c
    q = select(m.id, m.legal_id, m.name, m.name_en)
    return {
        mid: {"member_id": mid, "legal_id": legal, "name": name or name_en, "name_en": name_en}
        for mid, legal, name, name_en in conn.execute(q)
    }


def _cards(conn: Connection) -> list[Any]:
    p = public_services.c
    q = select(p.service_id, p.member_id, p.title_fa, p.title_en, p.status, p.declared_level)
    return list(conn.execute(q))


def _confirmed(conn: Connection, owner: dict[str, str]) -> dict[str, int]:
    d = duplicate_decisions.c
    out: Counter[str] = Counter()
    for a, b in conn.execute(select(d.service_a, d.service_b).where(d.status == "confirmed")):
        out[NATION] += 1
        for m in {owner.get(a), owner.get(b)} - {None}:
            out[str(m)] += 1
    return dict(out)


def load_snapshots(
    conn: Connection, since: date | None = None
) -> dict[str, list[tuple[date, dict[str, Any]]]]:
    """Every snapshot by scope, oldest first (from ``since`` when given)."""
    s = oversight_snapshots.c
    q = select(s.day, s.scope, s.data).order_by(s.day)
    if since is not None:
        q = q.where(s.day >= since.isoformat())
    out: dict[str, list[tuple[date, dict[str, Any]]]] = {}
    for day, scope, data in conn.execute(q):
        try:
            parsed = json.loads(data)
            out.setdefault(scope, []).append((date.fromisoformat(day), parsed))
        except ValueError:
            continue
    return out


def _satisfaction(conn: Connection, now: datetime) -> dict[str, dict[str, tuple[int, int]]]:
    """Ratings and satisfied ratings by Jalali month (``1404/03``), national and per agency."""
    r, p = ratings.c, public_services.c
    day = func.substr(r.created_at, 1, 10)
    since = rfc3339(now - timedelta(days=31 * MONTHS_SHOWN))
    q = (
        select(p.member_id, day, func.count(), func.sum(case((r.score >= 4, 1), else_=0)))
        .select_from(ratings.join(public_services, r.service_id == p.service_id))
        .where(r.created_at >= since)
        .group_by(p.member_id, day)
    )
    out: dict[str, dict[str, list[int]]] = {}
    for member_id, d, n, ok in conn.execute(q):
        try:
            j = to_jalali(date.fromisoformat(d))
        except (TypeError, ValueError):
            continue
        month = f"{j.year:04d}/{j.month:02d}"
        for scope in (NATION, member_id):
            cell = out.setdefault(scope, {}).setdefault(month, [0, 0])
            cell[0] += int(n)
            cell[1] += int(ok or 0)
    return {s: {m: (v[0], v[1]) for m, v in ms.items()} for s, ms in out.items()}


def build_overview(conn: Connection, now: datetime, period: str | None = None) -> Overview:
    """Everything oversight shows, measured now (KPIs for ``period``, see kpis.py)."""
    evidence = gather(conn, now)
    verdicts = assess(conn, now, evidence)
    cards = _cards(conn)
    services = {}
    for c in cards:
        v = verdicts.get(c.service_id)
        services[c.service_id] = ServiceRow(
            c.service_id,
            c.member_id,
            c.title_fa or c.title_en or c.service_id,
            c.status == "active",
            c.declared_level,
            v.verified_level if v else 0,
            bool(v and v.counted),
            tuple(r["code"] for r in v.reasons) if v else (),
        )
    owner = {sid: s.member_id for sid, s in services.items()}
    active_ids = [sid for sid, s in services.items() if s.active]
    return Overview(
        now=now,
        kpi=measure_kpis(conn, active_ids, now, period),
        services=services,
        agencies_by_id=_members(conn),
        findings=find_all(conn, now, evidence),
        confirmed_duplicates=_confirmed(conn, owner),
        snapshots=load_snapshots(conn),
        satisfaction=_satisfaction(conn, now),
    )
