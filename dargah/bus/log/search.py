"""Finding records in the message log: by request id, client, service, outcome, subject and time.

Each result carries its chain position (``chain``, ``seq``, ``prev_hash``, ``hash``)
and the seal that covers it (its chain's first seal at or after its ``seq``), so that an
operator following a failure up can show the record is the one the bus wrote.
Every filter is served by an index of ``message_log`` (the subject and the request id
by the indexes kept behind it, :mod:`dargah.bus.log.lookup`); results come newest
first (by seq, then chain: with several chains, records are ordered by their place in
their chains, which grow side by side), ``before`` pages further back: a page takes
every chain's records at the seq it ends with, so that the next one misses none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select

from dargah.bus.log.lookup import complete_page, newest_for_request, newest_for_subject
from dargah.core.clock import rfc3339
from dargah.store.tables import message_log, message_log_seal

MAX_LIMIT = 500


@dataclass(frozen=True)
class LogQuery:
    request_id: str | None = None
    client: str | None = None
    service: str | None = None
    outcome: str | None = None
    subject_ref: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before: int | None = None
    limit: int = 50


def _ts(moment: datetime) -> str:
    return rfc3339(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def search_log(conn: Connection, q: LogQuery) -> list[dict[str, Any]]:
    t = message_log
    stmt = select(t)
    for column, value in (
        (t.c.client, q.client),
        (t.c.service, q.service),
        (t.c.outcome, q.outcome),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if q.outcome is not None and q.outcome != "ok":
        stmt = stmt.where(t.c.outcome != "ok")  # lets the partial index of failures serve it
    if q.since is not None:
        stmt = stmt.where(t.c.ts >= _ts(q.since))
    if q.until is not None:
        stmt = stmt.where(t.c.ts < _ts(q.until))
    if q.before is not None:
        stmt = stmt.where(t.c.seq < q.before)
    limit = max(1, min(q.limit, MAX_LIMIT))
    if q.request_id is not None:
        if q.subject_ref is not None:
            stmt = stmt.where(t.c.subject_ref == q.subject_ref)
        rows = newest_for_request(conn, stmt, q.request_id, limit)
    elif q.subject_ref is not None:
        rows = newest_for_subject(conn, stmt, q.subject_ref, limit)
    else:
        newest = stmt.order_by(t.c.seq.desc(), t.c.chain.desc()).limit(limit)
        rows = complete_page(conn, stmt, [dict(r) for r in conn.execute(newest).mappings()], limit)
    for row in rows:
        seal = (
            conn.execute(
                select(message_log_seal)
                .where(
                    message_log_seal.c.chain == row["chain"], message_log_seal.c.seq >= row["seq"]
                )
                .order_by(message_log_seal.c.seq, message_log_seal.c.id)
                .limit(1)
            )
            .mappings()
            .first()
        )
        row["seal"] = (
            {k: seal[k] for k in ("seq", "hash", "ts", "kid", "signature")} if seal else None
        )
    return rows
