"""Where the message log is written: SQLite (embedded) or PostgreSQL (scale-out).

A backend writes one chain (protocol §6, "Several chains"). The unnamed chain
('') is shared by any number of bus processes: each batch locks the log, reads
the tail, chains and inserts the batch, commits. A named chain has one writer
(one bus process; a session lock on PostgreSQL, a lock file on the node keep it
so), which knows its tail: a batch is chained and inserted with no lock that
another writer could hold, so a node that freezes mid-commit holds up nobody
else. Nothing is acknowledged before the commit returns. SQLite's backend is here,
PostgreSQL's in :mod:`dargah.bus.log.postgres`.
"""

from __future__ import annotations

import fcntl
import operator
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from dargah.bus.log.chain import FIELDS, GENESIS, chain_digest, hash_parts
from dargah.bus.log.lookup import (
    MARK_SQL,
    MOVE_MARK_SQL,
    NEW_SQL,
    TOP_SQL,
    index_range,
    keyed,
    mark_name,
    request_sql,
    sql,
    subject_sql,
)

_COLS = ", ".join(f'"{f}"' for f in FIELDS)
_TAIL_SQL = "SELECT seq, hash FROM message_log WHERE chain = {p} ORDER BY seq DESC LIMIT 1"
_ARCHIVE_TAIL_SQL = (
    "SELECT last_seq, last_hash FROM message_log_archive WHERE chain = {p}"
    " ORDER BY last_seq DESC LIMIT 1"
)
_SEALED_SQL = "SELECT MAX(seq) FROM message_log_seal WHERE chain = {p}"
_SEAL_SQL = (
    "INSERT INTO message_log_seal (chain, seq, hash, ts, kid, signature)"
    " VALUES ({p}, {p}, {p}, {p}, {p}, {p})"
)
_BODY_SQL = (
    "INSERT INTO message_log_body (chain, seq, kid, nonce, request_body, response_body)"
    " VALUES ({p}, {p}, {p}, {p}, {p}, {p})"
)
_CHAINS_SQL = "SELECT chain FROM message_log_chain ORDER BY chain"
_REGISTER_SQL = (
    "INSERT INTO message_log_chain (chain, created_at) VALUES ({p}, {p}) ON CONFLICT DO NOTHING"
)
_CHECKPOINT_SQL = (
    "INSERT INTO message_log_checkpoint (ts, heads, kid, signature) VALUES ({p}, {p}, {p}, {p})"
)
# Python's sqlite3 binds None only after looking for an adapter: without one registered, it
# raises and clears an AttributeError (``__conform__``) each time: some 3,000 instructions for
# every null column of every record. An adapter that returns None (a C call) binds the same NULL.
_NULL: Callable[[None], None] = {}.get  # type: ignore[assignment]
sqlite3.register_adapter(type(None), _NULL)
_TAIL_SQLITE = _TAIL_SQL.replace("{p}", "?")
_BODY_SQLITE = _BODY_SQL.replace("{p}", "?")
# The unnamed chain's lock, one per schema, so that separate instances in one database never
# wait on each other. Named chains take no lock per batch.
PG_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext('dargah:message_log:' || current_schema()))"
Body = tuple[str, bytes, bytes | None, bytes | None]  # kid, nonce, request, response
Head = tuple[str, int, str]  # chain, seq, hash


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

    def register(self) -> None:
        """Add the backend's chain to the instance's chains (once)."""

    def heads(self) -> list[Head]:
        """The head of every chain of the instance, as committed now."""

    def add_checkpoint(self, ts: str, heads: str, kid: str, signature: str) -> None: ...

    def index_lookups(self) -> int:
        """Bring the indexes by subject and request id up to date by one batch; returns the
        records covered."""

    def tail(self) -> tuple[int, str]:
        """(seq, hash) of the chain's newest record, or (0, GENESIS) for an empty chain."""

    def last_sealed_seq(self) -> int: ...

    def checkpoint(self) -> None:
        """Move committed records from a write-ahead log into the database, if the backend has
        one to move (SQLite's WAL), without holding up the other writers."""

    def ping(self) -> None: ...

    def close(self) -> None: ...


Prepared = list[tuple[bytes, bytes]]
_ROW = operator.itemgetter(*FIELDS)


def _prepare(records: list[dict[str, Any]], chain: str) -> Prepared:
    """Each record's hash parts, built before the log is locked (see :func:`_chain`)."""
    for rec in records:
        rec["chain"] = chain
    return [hash_parts(rec) for rec in records]


def _chain(
    records: list[dict[str, Any]], prepared: Prepared, seq: int, prev: str
) -> list[tuple[Any, ...]]:
    """Give each record its seq, prev_hash and hash, and return the rows to insert (under the
    log's lock: the little left to do once the tail is known, so that other writers wait as
    short a time as possible)."""
    rows = []
    digest = bytes.fromhex(prev)
    for rec, parts in zip(records, prepared, strict=True):
        seq += 1
        digest = chain_digest(digest, seq, parts)
        rec["seq"] = seq
        rec["prev_hash"] = prev
        rec["hash"] = prev = digest.hex()
        try:
            rows.append(_ROW(rec))
        except KeyError:  # a field the record never had: null, as in its hash
            rows.append(tuple(rec.get(f) for f in FIELDS))
    return rows


def _q(statement: str, placeholder: str) -> str:
    return statement.replace("{p}", placeholder)


def _now() -> str:
    from dargah.core.clock import now_rfc3339

    return now_rfc3339()


class SqliteLog:
    """Writers of several processes take turns on an flock first, so a waiting writer
    sleeps in the kernel until the lock is free instead of in SQLite's busy handler
    (SQLite has one writer at a time, whatever the chains)."""

    def __init__(self, path: str, durability: str, chain: str = "") -> None:
        self.chain = chain
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
        self._mark = mark_name(chain)
        self._known: tuple[int, str] | None = None  # the tail of this connection's last commit
        self._version = 0  # and the database's data_version it was committed on

    def _tail(self) -> tuple[int, str]:
        conn, c = self._conn, (self.chain,)
        row = (
            conn.execute(_TAIL_SQLITE, c).fetchone()
            or conn.execute(_q(_ARCHIVE_TAIL_SQL, "?"), c).fetchone()
        )
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def tail(self) -> tuple[int, str]:
        return self._tail()

    def register(self) -> None:
        with self._no_flush():
            self._conn.execute(_q(_REGISTER_SQL, "?"), (self.chain, _now()))

    def append(self, records: list[dict[str, Any]], bodies: list[Body | None]) -> None:
        prepared = _prepare(records, self.chain)
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
            self._append(records, _prepare(records, self.chain), bodies)
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
        prepared: Prepared,
        bodies: list[Body | None],
    ) -> None:
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            # The tail this connection committed last is still the tail when no other
            # connection has committed since (SQLite's data_version stays the same): the log's
            # lock is held, so none can commit now.
            version = c.execute("PRAGMA data_version").fetchone()[0]
            known = self._known
            seq, prev = known if known is not None and version == self._version else self._tail()
            c.executemany(self._insert, _chain(records, prepared, seq, prev))
            chain = self.chain
            body_rows = [(chain, r["seq"], *b) for r, b in zip(records, bodies, strict=True) if b]
            if body_rows:
                c.executemany(_BODY_SQLITE, body_rows)
            c.execute("COMMIT")
        except BaseException:
            self._known = None  # perhaps committed after all: read it again
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        self._known, self._version = (records[-1]["seq"], records[-1]["hash"]), version

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
            self._conn.execute(_q(_SEAL_SQL, "?"), (self.chain, seq, hash_, ts, kid, signature))

    def heads(self) -> list[Head]:
        return _heads(self._conn.execute(_CHAINS_SQL).fetchall(), self._conn.execute, "?")

    def add_checkpoint(self, ts: str, heads: str, kid: str, signature: str) -> None:
        with self._no_flush():
            self._conn.execute(_q(_CHECKPOINT_SQL, "?"), (ts, heads, kid, signature))

    def index_lookups(self) -> int:
        c, chain = self._conn, self.chain
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            with self._no_flush():
                c.execute("BEGIN IMMEDIATE")
                try:
                    mark = c.execute(sql(MARK_SQL, "?"), (self._mark,)).fetchone()
                    top = c.execute(sql(TOP_SQL, "?"), (chain,)).fetchone()[0]
                    span = index_range(mark[0] if mark else 0, top)
                    if span is not None:
                        rows = c.execute(sql(NEW_SQL, "?"), (chain, *span))
                        subjects, requests = keyed(chain, rows)
                        c.executemany(subject_sql("?"), subjects)
                        c.executemany(request_sql("?"), requests)
                        c.execute(sql(MOVE_MARK_SQL, "?"), (self._mark, span[1]))
                    c.execute("COMMIT")
                except BaseException:
                    if c.in_transaction:
                        c.execute("ROLLBACK")
                    raise
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        return 0 if span is None else span[1] - span[0]

    def last_sealed_seq(self) -> int:
        row = self._conn.execute(_q(_SEALED_SQL, "?"), (self.chain,)).fetchone()
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


def _heads(chains: list[Any], execute: Callable[..., Any], placeholder: str) -> list[Head]:
    out = []
    for (chain,) in chains:
        row = (
            execute(_q(_TAIL_SQL, placeholder), (chain,)).fetchone()
            or execute(_q(_ARCHIVE_TAIL_SQL, placeholder), (chain,)).fetchone()
        )
        if row is not None:
            out.append((str(chain), int(row[0]), str(row[1])))
    return out


def open_backend(db_url: str, durability: str, chain: str = "") -> LogBackend:
    """A log backend of ``chain`` on its own connection, for the writer thread."""
    if db_url.startswith("sqlite:///"):
        return SqliteLog(db_url.removeprefix("sqlite:///"), durability, chain)
    from dargah.bus.log.postgres import PostgresLog

    url = db_url.replace("postgresql+psycopg://", "postgresql://", 1)
    return PostgresLog(url, chain)
