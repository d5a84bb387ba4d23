"""Where the message log is written: SQLite (embedded) or PostgreSQL (scale-out).

Both take the same steps for a batch of records, so that any number of bus
processes share one chain: lock the log, read its tail, chain and insert the
batch, commit. Nothing is acknowledged before the commit returns.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from dargah.bus.log.chain import FIELDS, GENESIS, chain_hash, hash_parts
from dargah.bus.log.lookup import (
    MARK_SQL,
    PG_MARK_SQL,
    PG_NEW_SQL,
    PG_REQUEST_SQL,
    PG_SUBJECT_SQL,
    SQLITE_MARK_SQL,
    SQLITE_NEW_SQL,
    SQLITE_REQUEST_SQL,
    SQLITE_SUBJECT_SQL,
    TOP_SQL,
    index_range,
    keyed,
)

_COLS = ", ".join(f'"{f}"' for f in FIELDS)
_TAIL_SQL = "SELECT seq, hash FROM message_log ORDER BY seq DESC LIMIT 1"
_ARCHIVE_TAIL_SQL = (
    "SELECT last_seq, last_hash FROM message_log_archive ORDER BY last_seq DESC LIMIT 1"
)
# One lock per schema, so that separate instances in one database never wait on each other.
PG_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext('dargah:message_log:' || current_schema()))"

Body = tuple[str, bytes, bytes | None, bytes | None]  # kid, nonce, request, response
NonBlockingAppend = Callable[[list[dict[str, Any]], list[Body | None]], bool]

# SQLite's WAL: the writers copy it into the database themselves, outside the log's lock
# (SqliteLog.checkpoint); past this many frames (64 MB of 4 KB pages) a checkpoint also makes
# the next commit start the WAL file over.
WAL_RESTART_FRAMES = 16_384


class LogBackend(Protocol):
    def append(self, records: list[dict[str, Any]], bodies: list[Body | None]) -> None:
        """Give each record its seq, prev_hash and hash, insert them all and commit."""

    def nonblocking_append(self) -> NonBlockingAppend | None:
        """Where a commit waits neither for a disk flush nor for the network (SQLite without
        fsync on commit), an :meth:`append` that returns False at once, nothing written, when
        another writer holds the log: the event loop can then commit itself (LogWriter).
        None where commits wait."""

    def add_seal(self, seq: int, hash_: str, ts: str, kid: str, signature: str) -> None: ...

    def index_lookups(self) -> int:
        """Bring the indexes by subject and request id up to date by one batch; returns the
        records covered."""

    def tail(self) -> tuple[int, str]:
        """(seq, hash) of the newest record, or (0, GENESIS) for an empty log."""

    def last_sealed_seq(self) -> int: ...

    def checkpoint(self) -> None:
        """Move committed records from a write-ahead log into the database, if the backend has
        one to move (SQLite's WAL), without holding up the other writers."""

    def ping(self) -> None: ...

    def close(self) -> None: ...


_SEQ, _PREV, _HASH = FIELDS.index("seq"), FIELDS.index("prev_hash"), FIELDS.index("hash")


def _prepare(records: list[dict[str, Any]]) -> list[tuple[list[Any], tuple[bytes, bytes]]]:
    """Each record's row and hash parts, built before the log is locked (see :func:`_chain`)."""
    return [([rec.get(f) for f in FIELDS], hash_parts(rec)) for rec in records]


def _chain(
    records: list[dict[str, Any]],
    prepared: list[tuple[list[Any], tuple[bytes, bytes]]],
    seq: int,
    prev: str,
) -> list[list[Any]]:
    """Give each record its seq, prev_hash and hash (under the log's lock: the little left
    to do once the tail is known, so that other writers wait as short a time as possible)."""
    rows = []
    for rec, (row, parts) in zip(records, prepared, strict=True):
        seq += 1
        h = chain_hash(prev, seq, parts)
        rec["seq"] = row[_SEQ] = seq
        rec["prev_hash"] = row[_PREV] = prev
        rec["hash"] = row[_HASH] = prev = h
        rows.append(row)
    return rows


class SqliteLog:
    """Writers of several processes take turns on an flock first, so a waiting writer
    sleeps in the kernel until the lock is free instead of in SQLite's busy handler."""

    def __init__(self, path: str, durability: str) -> None:
        # mode=rw: never create an empty database where the instance's should be.
        self._conn = sqlite3.connect(
            f"file:{path}?mode=rw",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=30,
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'power' else 'NORMAL'}")
        self._conn.execute("PRAGMA busy_timeout=30000")
        # Not in the commit: SQLite would copy the WAL into the database (and fsync both) while
        # this writer holds the log's lock, and every other writer would wait for it.
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self._lock_fd = os.open(f"{path}-loglock", os.O_RDWR | os.O_CREAT, 0o600)
        self._insert = f"INSERT INTO message_log ({_COLS}) VALUES ({', '.join('?' * len(FIELDS))})"
        self._flushes = durability == "power"  # every commit waits for fsync
        self._waits = True

    def _tail(self) -> tuple[int, str]:
        conn = self._conn
        row = conn.execute(_TAIL_SQL).fetchone() or conn.execute(_ARCHIVE_TAIL_SQL).fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def tail(self) -> tuple[int, str]:
        return self._tail()

    def append(self, records: list[dict[str, Any]], bodies: list[Body | None]) -> None:
        prepared = _prepare(records)
        if not self._waits:  # a connection that tried without waiting, now made to wait
            self._conn.execute("PRAGMA busy_timeout=30000")
            self._waits = True
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            self._append(records, prepared, bodies)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def nonblocking_append(self) -> NonBlockingAppend | None:
        return None if self._flushes else self._try_append

    def _try_append(self, records: list[dict[str, Any]], bodies: list[Body | None]) -> bool:
        if self._waits:  # this connection never waits: a busy database means "try again later"
            self._conn.execute("PRAGMA busy_timeout=0")
            self._waits = False
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:
            self._append(records, _prepare(records), bodies)
        except sqlite3.OperationalError as exc:
            # BEGIN IMMEDIATE found another connection writing (the registry's, an archive):
            # nothing of this batch was written.
            if exc.sqlite_errorcode == sqlite3.SQLITE_BUSY and not self._conn.in_transaction:
                return False
            raise
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        return True

    def _append(
        self,
        records: list[dict[str, Any]],
        prepared: list[tuple[list[Any], tuple[bytes, bytes]]],
        bodies: list[Body | None],
    ) -> None:
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            seq, prev = self._tail()
            c.executemany(self._insert, _chain(records, prepared, seq, prev))
            body_rows = [(r["seq"], *b) for r, b in zip(records, bodies, strict=True) if b]
            if body_rows:
                c.executemany(
                    "INSERT INTO message_log_body (seq, kid, nonce, request_body, response_body)"
                    " VALUES (?, ?, ?, ?, ?)",
                    body_rows,
                )
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    @contextmanager
    def _no_flush(self) -> Iterator[None]:
        """Commit without fsync, also with ``power``: for what is not a record (seals, the
        lookup indexes), so that no other writer waits for a flush of it. It still reaches
        the disk with the next record's commit, which flushes the WAL before it; if power is
        lost first, the index is rebuilt from the mark and the tail sealed at the next start,
        as after a crash."""
        if not self._flushes:
            yield
            return
        self._conn.execute("PRAGMA synchronous=NORMAL")
        try:
            yield
        finally:
            self._conn.execute("PRAGMA synchronous=FULL")

    def add_seal(self, seq: int, hash_: str, ts: str, kid: str, signature: str) -> None:
        with self._no_flush():
            self._conn.execute(
                "INSERT INTO message_log_seal (seq, hash, ts, kid, signature)"
                " VALUES (?, ?, ?, ?, ?)",
                (seq, hash_, ts, kid, signature),
            )

    def index_lookups(self) -> int:
        c = self._conn
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            with self._no_flush():
                c.execute("BEGIN IMMEDIATE")
                try:
                    mark = c.execute(MARK_SQL).fetchone()
                    span = index_range(mark[0] if mark else 0, c.execute(TOP_SQL).fetchone()[0])
                    if span is not None:
                        subjects, requests = keyed(c.execute(SQLITE_NEW_SQL, span))
                        c.executemany(SQLITE_SUBJECT_SQL, subjects)
                        c.executemany(SQLITE_REQUEST_SQL, requests)
                        c.execute(SQLITE_MARK_SQL, (span[1],))
                    c.execute("COMMIT")
                except BaseException:
                    if c.in_transaction:
                        c.execute("ROLLBACK")
                    raise
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        return 0 if span is None else span[1] - span[0]

    def last_sealed_seq(self) -> int:
        row = self._conn.execute("SELECT MAX(seq) FROM message_log_seal").fetchone()
        return int(row[0] or 0)

    def checkpoint(self) -> None:
        """A passive checkpoint: it copies what no reader still needs and waits for nobody, so
        writers go on committing meanwhile. The next commit after a complete one starts the WAL
        over; when commits keep coming before that can happen, a WAL grown past
        WAL_RESTART_FRAMES is restarted under the log's lock, waiting a moment at most for
        readers (a long reader, such as ``dargah log verify``, makes it try again later)."""
        c = self._conn
        _busy, frames, _done = c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if frames < WAL_RESTART_FRAMES:
            return
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            c.execute("PRAGMA busy_timeout=200")
            try:
                c.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            finally:
                c.execute("PRAGMA busy_timeout=30000")
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def ping(self) -> None:
        self._conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        self._conn.close()
        os.close(self._lock_fd)


class PostgresLog:
    def __init__(self, url: str) -> None:
        import psycopg

        self._conn = psycopg.connect(url, autocommit=False, connect_timeout=5)
        marks = ", ".join(["%s"] * len(FIELDS))
        self._insert = f"INSERT INTO message_log ({_COLS}) VALUES ({marks})"

    def _tail(self) -> tuple[int, str]:
        with self._conn.cursor() as cur:
            row = cur.execute(_TAIL_SQL).fetchone() or cur.execute(_ARCHIVE_TAIL_SQL).fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def tail(self) -> tuple[int, str]:
        try:
            return self._tail()
        finally:
            self._conn.rollback()

    def append(self, records: list[dict[str, Any]], bodies: list[Body | None]) -> None:
        c = self._conn
        prepared = _prepare(records)
        try:
            with c.cursor() as cur:
                cur.execute(PG_LOCK_SQL)
                seq, prev = self._tail()
                cur.executemany(self._insert, _chain(records, prepared, seq, prev))
                body_rows = [(r["seq"], *b) for r, b in zip(records, bodies, strict=True) if b]
                if body_rows:
                    cur.executemany(
                        "INSERT INTO message_log_body"
                        " (seq, kid, nonce, request_body, response_body)"
                        " VALUES (%s, %s, %s, %s, %s)",
                        body_rows,
                    )
            c.commit()
        except BaseException:
            c.rollback()
            raise

    def nonblocking_append(self) -> NonBlockingAppend | None:
        return None  # every commit is a round trip to the server

    def add_seal(self, seq: int, hash_: str, ts: str, kid: str, signature: str) -> None:
        with self._conn.cursor() as cur:
            cur.execute(
                "INSERT INTO message_log_seal (seq, hash, ts, kid, signature)"
                " VALUES (%s, %s, %s, %s, %s)",
                (seq, hash_, ts, kid, signature),
            )
        self._conn.commit()

    def index_lookups(self) -> int:
        c = self._conn
        try:
            with c.cursor() as cur:
                cur.execute(PG_LOCK_SQL)
                mark = cur.execute(MARK_SQL).fetchone()
                top = cur.execute(TOP_SQL).fetchone()
                span = index_range(mark[0] if mark else 0, top[0] if top else 0)
                if span is not None:
                    subjects, requests = keyed(cur.execute(PG_NEW_SQL, span).fetchall())
                    if subjects:
                        cur.executemany(PG_SUBJECT_SQL, subjects)
                    if requests:
                        cur.executemany(PG_REQUEST_SQL, requests)
                    cur.execute(PG_MARK_SQL, (span[1],))
            c.commit()
        except BaseException:
            c.rollback()
            raise
        return 0 if span is None else span[1] - span[0]

    def checkpoint(self) -> None:
        """PostgreSQL checkpoints by itself."""

    def last_sealed_seq(self) -> int:
        with self._conn.cursor() as cur:
            row = cur.execute("SELECT MAX(seq) FROM message_log_seal").fetchone()
        self._conn.rollback()
        return int(row[0] or 0) if row else 0

    def ping(self) -> None:
        with self._conn.cursor() as cur:
            cur.execute("SELECT 1")
        self._conn.rollback()

    def close(self) -> None:
        self._conn.close()


def open_backend(db_url: str, durability: str) -> LogBackend:
    """A log backend on its own connection, for the writer thread."""
    if db_url.startswith("sqlite:///"):
        return SqliteLog(db_url.removeprefix("sqlite:///"), durability)
    url = db_url.replace("postgresql+psycopg://", "postgresql://", 1)
    return PostgresLog(url)
