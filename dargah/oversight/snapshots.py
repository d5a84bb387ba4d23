"""Daily snapshots: today's national and per-agency measurements, kept for the history.

One row per (day, scope) in ``oversight_snapshots``: scope ``nation`` or an agency's member
id, ``data`` the :meth:`~dargah.oversight.overview.Overview.summary` of that scope (level
distribution, counted services, KPIs, violations, duplicates, plan progress). The day is
Tehran's. Taking a snapshot again on the same day replaces that day's rows, so it is
idempotent; the plan projection and the dashboard's history read these rows.

Candidate duplicate pairs are counted here (scoring every pair takes seconds on a national
catalogue, too slow for a page) and shown from the latest snapshot.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert

from dargah.core.clock import rfc3339
from dargah.core.jalali import TEHRAN
from dargah.oversight.overview import NATION, build_overview
from dargah.registry.catalogue.duplicates import load_services, score_pairs
from dargah.store.people_tables import oversight_snapshots

CANDIDATE_FLOOR = 0.5


def _candidates(conn: Connection, owner: dict[str, str]) -> Counter[str]:
    """Undecided pairs scoring at least 0.5, national and per agency of either service."""
    from dargah.registry.catalogue.duplicates import decisions

    decided = decisions(conn)
    out: Counter[str] = Counter()
    for p in score_pairs(load_services(conn), floor=CANDIDATE_FLOOR):
        if (p.a, p.b) in decided:
            continue
        out[NATION] += 1
        for m in {owner.get(p.a), owner.get(p.b)} - {None}:
            out[str(m)] += 1
    return out


def take_snapshot(engine: Engine, now: datetime, *, duplicates: bool = True) -> dict[str, Any]:
    """Store today's measurements for the nation and every agency; returns what was stored.

    ``{"day", "scopes": n, "nation": summary}``. Running it twice a day keeps one row per scope.
    """
    day = now.astimezone(TEHRAN).date()
    with engine.begin() as conn:
        ov = build_overview(conn, now)
        scopes: dict[str, dict[str, Any]] = {NATION: ov.summary(NATION)}
        for agency in ov.agencies():
            scopes[agency["member_id"]] = ov.summary(agency["member_id"])
        if duplicates:
            owner = {sid: s.member_id for sid, s in ov.services.items()}
            counts = _candidates(conn, owner)
            for scope, data in scopes.items():
                data["duplicates"]["candidates"] = counts.get(scope, 0)
                data["duplicates"]["candidates_day"] = day.isoformat()
        store(conn, day, scopes, now)
    return {"day": day.isoformat(), "scopes": len(scopes), "nation": scopes[NATION]}


def store(conn: Connection, day: date, scopes: dict[str, dict[str, Any]], now: datetime) -> None:
    """Replace ``day``'s rows of these scopes (one transaction: the caller's)."""
    s = oversight_snapshots.c
    conn.execute(
        delete(oversight_snapshots).where(s.day == day.isoformat(), s.scope.in_(sorted(scopes)))
    )
    taken = rfc3339(now)
    conn.execute(
        insert(oversight_snapshots),
        [
            {
                "day": day.isoformat(),
                "scope": scope,
                "data": json.dumps(data, ensure_ascii=False, default=str),
                "taken_at": taken,
            }
            for scope, data in scopes.items()
        ],
    )
