"""The portal's view of the national catalogue: what a citizen can browse and search."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, select

from dargah.portal.search import Entry, SearchIndex
from dargah.store.tables import members, public_services

LIFE_EVENTS = {
    "birth": "تولد فرزند",
    "marriage": "ازدواج",
    "death": "فوت",
    "vehicle": "خرید خودرو",
    "business-start": "راه‌اندازی کسب‌وکار",
    "education": "تحصیل",
    "retirement": "بازنشستگی",
    "housing": "مسکن",
    "employment": "اشتغال",
    "health": "سلامت",
}


def _list(value: Any) -> list[str]:
    if not value:
        return []
    data = json.loads(value) if isinstance(value, str) else value
    return [str(x) for x in data] if isinstance(data, list) else []


class Catalogue:
    """Active public services with their agency, loaded once; rebuilt when asked."""

    def __init__(self, conn: Connection) -> None:
        names = {
            r.id: (r.name, r.name_en)
            for r in conn.execute(select(members.c.id, members.c.name, members.c.name_en))
        }
        self.services: dict[str, dict[str, Any]] = {}
        rows = []
        for r in conn.execute(
            select(public_services)
            .where(public_services.c.status == "active")
            .order_by(public_services.c.service_id)
        ).mappings():
            fa, en = names.get(r["member_id"], (None, None))
            card = dict(r)
            card["agency_name"] = fa or en or ""
            card["life_events"] = _list(r["life_events"])
            card["channels"] = _list(r["channels"])
            card["documents"] = json.loads(r["documents"]) if r["documents"] else None
            card["data_source_ids"] = _list(r["data_sources"])
            card["proactive_topic_ids"] = _list(r["proactive_topics"])
            card["form_schema"] = json.loads(r["form"]) if r["form"] else None
            self.services[r["service_id"]] = card
            title = card.get("title_fa") or card.get("title_en") or card["service_id"]
            entry = Entry(
                card["service_id"],
                title,
                card["agency_name"],
                card.get("cluster"),
                tuple(card["life_events"]),
            )
            titles = " ".join(t for t in (card.get("title_fa"), card.get("title_en")) if t)
            other = " ".join(
                str(t)
                for t in (
                    card["agency_name"],
                    card.get("cluster"),
                    card.get("description_fa"),
                    card.get("description_en"),
                )
                if t
            )
            rows.append((entry, titles, other))
        self.index = SearchIndex(rows)

    def clusters(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.services.values():
            if s.get("cluster"):
                out[s["cluster"]] = out.get(s["cluster"], 0) + 1
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def agencies(self) -> list[tuple[str, str, int]]:
        """(legal ID, name, number of services) of every agency with a service, by name."""
        out: dict[str, list[Any]] = {}
        for s in self.services.values():
            entry = out.setdefault(s["agency_legal_id"], [s["agency_name"], 0])
            entry[1] += 1
        return sorted(((k, v[0], v[1]) for k, v in out.items()), key=lambda x: x[1])

    def by(
        self,
        *,
        cluster: str | None = None,
        life_event: str | None = None,
        agency: str | None = None,
    ) -> list[dict[str, Any]]:
        return [
            s
            for s in self.services.values()
            if (cluster is None or s.get("cluster") == cluster)
            and (life_event is None or life_event in s["life_events"])
            and (agency is None or agency in (s.get("member_id"), s.get("agency_legal_id")))
        ]
