"""The message log's index by subject, written behind the log.

``subject_ref`` is an HMAC, so the key of each new record lands at a random
place of an index on it: written with every record, that index cost each call
a page of its own to write (and, with several writers, to read again). So the
log's writers add ``(subject_key, seq)`` to ``message_log_subject`` in sorted
batches, every :data:`INDEX_SECONDS`, under the same lock as the records, and
move the ``subject`` mark of ``message_log_indexed`` on in the same
transaction. The key is a 64-bit hash of ``subject_ref``, a quarter of its
size, so that four times as many entries share a page.

A search by subject reads the index up to the mark and the records after the
mark directly (their ``subject_ref`` is in ``message_log``; a fraction of a second of
traffic), so it always sees every record, whatever the index's lag.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Select, select

from dargah.store.tables import message_log, message_log_indexed, message_log_subject

INDEX_SECONDS = 0.25  # how often a writer brings the index up to date
# Records per transaction at most (about 20 ms of the log's lock here); a writer that finds more
# waiting indexes the next batch after its next commit.
INDEX_BATCH = 2_500

MARK_SQL = "SELECT last_seq FROM message_log_indexed WHERE name = 'subject'"
TOP_SQL = "SELECT MAX(seq) FROM message_log"
NEW_SQL = "SELECT subject_ref, seq FROM message_log WHERE seq > {p} AND seq <= {p}"
SQLITE_NEW_SQL = NEW_SQL.format(p="?")
PG_NEW_SQL = NEW_SQL.format(p="%s")
SQLITE_INDEX_SQL = "INSERT OR IGNORE INTO message_log_subject (subject_key, seq) VALUES (?, ?)"
PG_INDEX_SQL = (
    "INSERT INTO message_log_subject (subject_key, seq) VALUES (%s, %s) ON CONFLICT DO NOTHING"
)
_MOVE_MARK = (
    "INSERT INTO message_log_indexed (name, last_seq) VALUES ('subject', {p})"
    " ON CONFLICT (name) DO UPDATE SET last_seq = excluded.last_seq"
)
SQLITE_MARK_SQL = _MOVE_MARK.format(p="?")
PG_MARK_SQL = _MOVE_MARK.format(p="%s")


def subject_key(ref: str) -> int:
    """The index's key of a ``subject_ref``: a 64-bit hash, as a signed integer."""
    digest = hashlib.blake2b(ref.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def keyed(rows: Iterable[Any]) -> list[tuple[int, int]]:
    """(key, seq) of the (subject_ref, seq) rows that have a subject, sorted: a B-tree takes
    sorted keys with fewer page visits."""
    return sorted((subject_key(str(ref)), int(seq)) for ref, seq in rows if ref is not None)


def index_range(mark: int | None, top: int | None) -> tuple[int, int] | None:
    """The seqs the next batch indexes, (after, upto), or None when the index is up to date."""
    after, top = int(mark or 0), int(top or 0)
    if top <= after:
        return None
    return after, min(top, after + INDEX_BATCH)


def subject_mark(conn: Connection) -> int:
    value = conn.execute(
        select(message_log_indexed.c.last_seq).where(message_log_indexed.c.name == "subject")
    ).scalar()
    return int(value or 0)


def newest_for_subject(
    conn: Connection, query: Select[Any], ref: str, limit: int
) -> list[dict[str, Any]]:
    """The newest ``limit`` rows of ``query`` (a select from message_log, any other filters
    applied) whose subject is ``ref``, newest first."""
    mark = subject_mark(conn)
    # Records after the mark: not indexed yet, so read from the log itself (a short range of seq).
    tail = query.where(message_log.c.seq > mark, message_log.c.subject_ref == ref)
    rows = [
        dict(r)
        for r in conn.execute(tail.order_by(message_log.c.seq.desc()).limit(limit)).mappings()
    ]
    if len(rows) < limit:
        s = message_log_subject
        indexed = query.join(s, s.c.seq == message_log.c.seq).where(
            s.c.subject_key == subject_key(ref),
            s.c.seq <= mark,
            message_log.c.subject_ref == ref,  # two refs may share a key
        )
        rows += [
            dict(r)
            for r in conn.execute(
                indexed.order_by(s.c.seq.desc()).limit(limit - len(rows))
            ).mappings()
        ]
    return rows
