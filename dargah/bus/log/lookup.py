"""The message log's lookup indexes, by subject and by request id, written behind the log.

``subject_ref`` is an HMAC and a request id is usually a random UUID, so the
key of each new record lands at a random place of an index on either: written
with every record, such an index cost each call a page of its own to write
(and, with several writers, to read again). So the log's writers add
``(key, seq)`` to ``message_log_subject`` and ``message_log_request`` in
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

from sqlalchemy import Column, Connection, Select, Table, select

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

MARK_SQL = f"SELECT last_seq FROM message_log_indexed WHERE name = '{MARK}'"
TOP_SQL = "SELECT MAX(seq) FROM message_log"
NEW_SQL = "SELECT seq, subject_ref, request_id FROM message_log WHERE seq > {p} AND seq <= {p}"
SQLITE_NEW_SQL = NEW_SQL.format(p="?")
PG_NEW_SQL = NEW_SQL.format(p="%s")
_ADD = "INSERT INTO {table} ({key}, seq) VALUES ({p}, {p}) ON CONFLICT DO NOTHING"
SQLITE_SUBJECT_SQL = _ADD.format(table="message_log_subject", key="subject_key", p="?")
SQLITE_REQUEST_SQL = _ADD.format(table="message_log_request", key="request_key", p="?")
PG_SUBJECT_SQL = _ADD.format(table="message_log_subject", key="subject_key", p="%s")
PG_REQUEST_SQL = _ADD.format(table="message_log_request", key="request_key", p="%s")
_MOVE_MARK = (
    f"INSERT INTO message_log_indexed (name, last_seq) VALUES ('{MARK}', {{p}})"
    " ON CONFLICT (name) DO UPDATE SET last_seq = excluded.last_seq"
)
SQLITE_MARK_SQL = _MOVE_MARK.format(p="?")
PG_MARK_SQL = _MOVE_MARK.format(p="%s")


def lookup_key(value: str) -> int:
    """The index's key of a ``subject_ref`` or request id: a 64-bit hash, as a signed integer."""
    digest = hashlib.blake2b(value.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def keyed(rows: Iterable[Any]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The (key, seq) rows of each index for the (seq, subject_ref, request_id) rows of the log,
    sorted: a B-tree takes sorted keys with fewer page visits."""
    subjects, requests = [], []
    for seq, ref, rid in rows:
        if ref is not None:
            subjects.append((lookup_key(str(ref)), int(seq)))
        requests.append((lookup_key(str(rid)), int(seq)))
    subjects.sort()
    requests.sort()
    return subjects, requests


def index_range(mark: int | None, top: int | None) -> tuple[int, int] | None:
    """The seqs the next batch indexes, (after, upto), or None when the indexes are up to date."""
    after, top = int(mark or 0), int(top or 0)
    if top <= after:
        return None
    return after, min(top, after + INDEX_BATCH)


def lookup_mark(conn: Connection) -> int:
    value = conn.execute(
        select(message_log_indexed.c.last_seq).where(message_log_indexed.c.name == MARK)
    ).scalar()
    return int(value or 0)


def newest_for_subject(
    conn: Connection, query: Select[Any], ref: str, limit: int
) -> list[dict[str, Any]]:
    """The newest ``limit`` rows of ``query`` (a select from message_log, any other filters
    applied) whose subject is ``ref``, newest first."""
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
    mark = lookup_mark(conn)
    # Records after the mark: not indexed yet, so read from the log itself (a short range of seq).
    tail = query.where(message_log.c.seq > mark, column == value)
    rows = [
        dict(r)
        for r in conn.execute(tail.order_by(message_log.c.seq.desc()).limit(limit)).mappings()
    ]
    if len(rows) < limit:
        indexed = query.join(index, index.c.seq == message_log.c.seq).where(
            key == lookup_key(value),
            index.c.seq <= mark,
            column == value,  # two values may share a key
        )
        rows += [
            dict(r)
            for r in conn.execute(
                indexed.order_by(index.c.seq.desc()).limit(limit - len(rows))
            ).mappings()
        ]
    return rows
