""" "Who used my data": the message-log records about one citizen, in words a citizen reads.

The log never holds a national code, only ``subject_ref`` (HMAC-SHA256 of the code under the
instance's subject key, gsb-protocol.md §6); this module turns a code into that reference and
returns the matching records with the calling agency's name and the service's title.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from dargah.bus.log.lookup import newest_for_subject
from dargah.core.identifiers import is_national_code
from dargah.registry.instance import subject_ref
from dargah.store.tables import members, message_log, services

PAGE = 50


def _member_of(client_or_service: str | None) -> str | None:
    """``DEV/GOV/10100387143`` of ``DEV/GOV/10100387143/sabt[/service]``."""
    if not client_or_service:
        return None
    parts = client_or_service.split("/")
    return "/".join(parts[:3]) if len(parts) >= 3 else None


def data_use(
    conn: Connection, national_code: str, *, before: int | None = None, limit: int = PAGE
) -> list[dict[str, Any]]:
    """The newest ``limit`` records whose subject is ``national_code`` (older than ``before``)."""
    if not is_national_code(national_code):
        raise ValueError("not a valid national code")
    q = select(
        message_log.c.chain,
        message_log.c.seq,
        message_log.c.ts,
        message_log.c.client,
        message_log.c.service,
        message_log.c.method,
        message_log.c.purpose,
        message_log.c.status,
        message_log.c.outcome,
    )
    if before is not None:
        q = q.where(message_log.c.seq < before)
    rows = newest_for_subject(conn, q, subject_ref(conn, national_code), limit)
    member_ids = {m for r in rows for m in (_member_of(r["client"]), _member_of(r["service"])) if m}
    service_ids = {r["service"] for r in rows if r["service"]}
    names: dict[str, str] = {
        r.id: r.name
        for r in conn.execute(
            select(members.c.id, members.c.name).where(members.c.id.in_(member_ids))
        )
    }
    titles: dict[str, str] = {
        r.id: r.title
        for r in conn.execute(
            select(services.c.id, services.c.title).where(services.c.id.in_(service_ids))
        )
    }
    for r in rows:
        r["agency"] = names.get(_member_of(r["client"]) or "", r["client"])
        r["provider_agency"] = names.get(_member_of(r["service"]) or "", "")
        r["service_title"] = titles.get(r["service"] or "", r["service"])
    return rows
