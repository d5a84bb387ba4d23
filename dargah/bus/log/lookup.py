"""The message log's lookup indexes, by subject and by request id, written behind the log.

``subject_ref`` is an HMAC and a request id is usually a random UUID, so the
key of each new record lands at a random place of an index on either: written
with every record, such an index cost each call a page of its own to write
(and, with several writers, to read again). So the log's writers add
``(key, chain, seq)`` to ``message_log_subject`` and ``message_log_request`` in
sorted batches, every :data:`INDEX_SECONDS`, under the same lock as the
records, and move the ``lookup`` mark of ``message_log_indexed`` on in the
same transaction. A key is a 64-bit hash of the value, a quarter of the size
of a ``subject_ref``, so that four times as many entries share a page.

A search reads the index up to the mark and the records after the mark
directly (their values are in ``message_log``; a fraction of a second of
traffic), so it always sees every record, whatever the index's lag.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Column, Connection, Select, Table, and_, or_, select, text

from dargah.store.tables import (
    message_log,
    message_log_indexed,
    message_log_request,
    message_log_subject,
)

INDEX_SECONDS = 0.25  # how often a writer brings the indexes up to date
# Records per transaction at most (about 20 ms of the log's lock here); a writer that finds more
# waiting indexes the next batch after its next commit.
INDEX_BATCH = 2_500
MARK = "lookup"

# Each chain has a mark of its own, moved by the chain's writer: ``lookup`` for the unnamed
# chain, ``lookup:{chain}`` for the others.
MARK_SQL = "SELECT last_seq FROM message_log_indexed WHERE name = {p}"
TOP_SQL = "SELECT MAX(seq) FROM message_log WHERE chain = {p}"
NEW_SQL = (
    "SELECT seq, subject_ref, request_id FROM message_log"
    " WHERE chain = {p} AND seq > {p} AND seq <= {p}"
)
_ADD = "INSERT INTO {table} ({key}, chain, seq) VALUES ({p}, {p}, {p}) ON CONFLICT DO NOTHING"
MOVE_MARK_SQL = (
    "INSERT INTO message_log_indexed (name, last_seq) VALUES ({p}, {p})"
    " ON CONFLICT (name) DO UPDATE SET last_seq = excluded.last_seq"
)


def sql(statement: str, placeholder: str) -> str:
    """One of the statements above for a driver's placeholder (``?`` or ``%s``)."""
    return statement.replace("{p}", placeholder)


def subject_sql(placeholder: str) -> str:
    return _ADD.format(table="message_log_subject", key="subject_key", p=placeholder)


def request_sql(placeholder: str) -> str:
    return _ADD.format(table="message_log_request", key="request_key", p=placeholder)


def mark_name(chain: str) -> str:
    return f"{MARK}:{chain}" if chain else MARK


def lookup_key(value: str) -> int:
    """The index's key of a ``subject_ref`` or request id: a 64-bit hash, as a signed integer."""
    digest = hashlib.blake2b(value.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def keyed(
    chain: str, rows: Iterable[Any]
) -> tuple[list[tuple[int, str, int]], list[tuple[int, str, int]]]:
    """The (key, chain, seq) rows of each index for the (seq, subject_ref, request_id) rows of
    a chain, sorted: a B-tree takes sorted keys with fewer page visits."""
    subjects, requests = [], []
    for seq, ref, rid in rows:
        if ref is not None:
            subjects.append((lookup_key(str(ref)), chain, int(seq)))
        requests.append((lookup_key(str(rid)), chain, int(seq)))
    subjects.sort()
    requests.sort()
    return subjects, requests


def index_range(mark: int | None, top: int | None) -> tuple[int, int] | None:
    """The seqs the next batch indexes, (after, upto), or None when the indexes are up to date."""
    after, top = int(mark or 0), int(top or 0)
    if top <= after:
        return None
    return after, min(top, after + INDEX_BATCH)


def lookup_mark(conn: Connection, chain: str = "") -> int:
    value = conn.execute(
        select(message_log_indexed.c.last_seq).where(message_log_indexed.c.name == mark_name(chain))
    ).scalar()
    return int(value or 0)


# The chains that have live records, one index probe each (a loose scan of the primary key).
LIVE_CHAINS_SQL = (
    "WITH RECURSIVE c(chain) AS (SELECT MIN(chain) FROM message_log UNION ALL"
    " SELECT (SELECT MIN(chain) FROM message_log WHERE chain > c.chain) FROM c"
    " WHERE c.chain IS NOT NULL) SELECT chain FROM c WHERE chain IS NOT NULL"
)


def live_chains(conn: Connection) -> list[str]:
    return [str(c) for (c,) in conn.execute(text(LIVE_CHAINS_SQL))]


def lookup_marks(conn: Connection) -> dict[str, int]:
    """Every chain with live records with its lookup mark (0 where nothing is indexed yet)."""
    marks = dict.fromkeys(live_chains(conn), 0)
    for name, last in conn.execute(
        select(message_log_indexed.c.name, message_log_indexed.c.last_seq).where(
            message_log_indexed.c.name.like(f"{MARK}%")
        )
    ):
        chain = "" if name == MARK else str(name).removeprefix(f"{MARK}:")
        if chain in marks:
            marks[chain] = int(last or 0)
    return marks


def newest_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records newest first: by seq, then chain (the order of every search of the log)."""
    return sorted(rows, key=lambda r: (int(r["seq"]), str(r.get("chain") or "")), reverse=True)


def complete_page(
    conn: Connection, query: Select[Any], rows: list[dict[str, Any]], limit: int
) -> list[dict[str, Any]]:
    """With several chains a page cut at seq S also takes the other chains' records at S, so
    that the next page (seq < S) misses none of them."""
    if len(rows) < limit or not rows:
        return rows
    last = int(rows[-1]["seq"])
    have = {(str(r.get("chain") or ""), int(r["seq"])) for r in rows}
    chains = [c for c in lookup_marks(conn) if (c, last) not in have]
    if not chains:
        return rows
    more = query.where(
        or_(*(and_(message_log.c.chain == c, message_log.c.seq == last) for c in chains))
    )
    extra = [dict(r) for r in conn.execute(more).mappings()]
    return rows + newest_first(extra)


def newest_for_subject(
    conn: Connection, query: Select[Any], ref: str, limit: int
) -> list[dict[str, Any]]:
    """The newest ``limit`` rows of ``query`` (a select from message_log, any other filters
    applied, ``chain`` and ``seq`` among its columns) whose subject is ``ref``, newest first
    (:func:`complete_page`)."""
    s = message_log_subject
    return _newest(conn, query, message_log.c.subject_ref, ref, s, s.c.subject_key, limit)


def newest_for_request(
    conn: Connection, query: Select[Any], request_id: str, limit: int
) -> list[dict[str, Any]]:
    """The newest ``limit`` rows of ``query`` whose request id is ``request_id``, newest first."""
    r = message_log_request
    return _newest(conn, query, message_log.c.request_id, request_id, r, r.c.request_key, limit)


def _newest(
    conn: Connection,
    query: Select[Any],
    column: Column[Any],
    value: str,
    index: Table,
    key: Column[Any],
    limit: int,
) -> list[dict[str, Any]]:
    marks = lookup_marks(conn)
    if not marks:
        return []
    t = message_log
    order = (t.c.seq.desc(), t.c.chain.desc())
    # Records after each chain's mark: not indexed yet, so read from the log itself (a short
    # range of seq in each chain).
    after = or_(*(and_(t.c.chain == c, t.c.seq > m) for c, m in marks.items()))
    tail = query.where(after, column == value).order_by(*order).limit(limit)
    rows = [dict(r) for r in conn.execute(tail).mappings()]
    if any(marks.values()):
        upto = or_(*(and_(index.c.chain == c, index.c.seq <= m) for c, m in marks.items() if m))
        indexed = query.join(index, and_(index.c.chain == t.c.chain, index.c.seq == t.c.seq)).where(
            key == lookup_key(value),
            upto,
            column == value,  # two values may share a key
        )
        rows += [dict(r) for r in conn.execute(indexed.order_by(*order).limit(limit)).mappings()]
    rows = newest_first(rows)[:limit]
    return complete_page(conn, query.where(column == value), rows, limit)
