"""The data catalogue, as the portal needs it: which bus service is the authentic source of
each data item, whose it is, and where it answers about one person.

A bus service that supplies a personal data item answers ``GET`` on a path whose only
parameter is ``{national_code}`` (the first such path in its OpenAPI document); that is the
address the portal pre-fills from. Read from the registry every 30 s.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from dargah.store.db import READ_ONLY
from dargah.store.tables import members, services, subsystems

RELOAD_SECONDS = 30.0
_PERSON_PATH = re.compile(r"^(/[^{}]*)*\{national_code\}(/[^{}]*)*$")


@dataclass(frozen=True, slots=True)
class Source:
    service_id: str
    title: str
    agency: str
    person_path: str | None
    supplies: tuple[str, ...]


def person_path(openapi: str | None) -> str | None:
    """The first GET path whose only parameter is ``{national_code}``."""
    if not openapi:
        return None
    try:
        doc = json.loads(openapi)
    except ValueError:
        return None
    for path, ops in (doc.get("paths") or {}).items():
        if isinstance(ops, dict) and "get" in ops and _PERSON_PATH.match(path):
            return str(path)
    return None


class DataCatalogue:
    """Data item -> its authentic source; service id -> what it is (refreshed every 30 s)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._loaded = 0.0
        self._by_item: dict[str, Source] = {}
        self._by_id: dict[str, Source] = {}
        self._agency_names: dict[str, str] = {}

    def _refresh(self) -> None:
        with self._lock:
            if time.monotonic() - self._loaded < RELOAD_SECONDS and self._by_id:
                return
            with self.engine.connect().execution_options(**READ_ONLY) as conn:
                names = {r.id: r.name for r in conn.execute(select(members.c.id, members.c.name))}
                rows = conn.execute(
                    select(
                        services.c.id,
                        services.c.title,
                        services.c.openapi,
                        services.c.supplies,
                        subsystems.c.member_id,
                    )
                    .join(subsystems, subsystems.c.id == services.c.subsystem_id)
                    .where(services.c.status == "active")
                    .order_by(services.c.id)
                ).all()
            by_item: dict[str, Source] = {}
            by_id: dict[str, Source] = {}
            for r in rows:
                supplies = tuple(json.loads(r.supplies or "[]"))
                src = Source(
                    r.id,
                    r.title,
                    names.get(r.member_id, r.member_id),
                    person_path(r.openapi),
                    supplies,
                )
                by_id[r.id] = src
                for item in supplies:
                    by_item.setdefault(item, src)
            self._by_item, self._by_id, self._agency_names = by_item, by_id, names
            self._loaded = time.monotonic()

    def source_of(self, item: str) -> Source | None:
        self._refresh()
        return self._by_item.get(item)

    def service(self, service_id: str) -> Source | None:
        self._refresh()
        return self._by_id.get(service_id)

    def agency_name(self, member_id: str) -> str:
        self._refresh()
        return self._agency_names.get(member_id, member_id)

    def summary(self) -> dict[str, Any]:
        self._refresh()
        return {"items": len(self._by_item), "services": len(self._by_id)}
