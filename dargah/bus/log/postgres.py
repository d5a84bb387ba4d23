"""The message log on PostgreSQL (scale-out): the unnamed chain behind a transaction lock per
batch, a named chain behind a session lock its writer holds while its connection lives.

A named chain's batch is one round trip: the records (and their bodies) as SQL literals in one
query of one or two INSERTs, which the server runs as one transaction and commits before it
answers (the simple query protocol). A COPY between psycopg's BEGIN and COMMIT took four round
trips and 1.4 times the client's CPU per batch (docs/performance.md, "Bus nodes on PostgreSQL").
The literals are built for ``standard_conforming_strings`` (set on the connection): a quote
is doubled and nothing else is special.

A named chain's writer also indexes by subject and request id (:mod:`dargah.bus.log.lookup`)
from the records it committed, kept in memory until indexed, instead of reading them back; a
crash loses only that memory: the mark of ``message_log_indexed`` moves with the entries, and
what lies after it is read back from the log, as the unnamed chain's writers always do.

See :mod:`dargah.bus.log.backends` for what a backend does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from dargah.bus.log.backends import (
    _ARCHIVE_TAIL_SQL,
    _BODY_SQL,
    _CHAINS_SQL,
    _CHECKPOINT_SQL,
    _COLS,
    _REGISTER_SQL,
    _SEAL_SQL,
    _SEALED_SQL,
    _TAIL_SQL,
    PG_LOCK_SQL,
    Body,
    Head,
    NonBlockingAppend,
    _chain,
    _heads,
    _now,
    _prepare,
    _q,
)
from dargah.bus.log.chain import GENESIS
from dargah.bus.log.lookup import (
    INDEX_BATCH,
    MARK_SQL,
    MOVE_MARK_SQL,
    NEW_SQL,
    TOP_SQL,
    index_range,
    keyed,
    mark_name,
    sql,
)

log = logging.getLogger("dargah.log")

# A named chain's writer holds this for as long as its connection lives.
_PG_CHAIN_LOCK_SQL = (
    "SELECT pg_try_advisory_lock(hashtext('dargah:message_log:' || current_schema() || ':' || %s))"
)

CHAIN_LOCK_SECONDS = 5.0

# The session that holds a chain's lock (a bigint advisory lock: its high and low halves).
_PG_END_HOLDER_SQL = (
    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
    " AND objsubid = 1 AND granted AND pid <> pg_backend_pid()"
    " AND ((classid::bigint << 32) | objid::bigint)"
    " = hashtext('dargah:message_log:' || current_schema() || ':' || %s)::bigint"
)


# Records committed and not yet indexed, kept in memory at most; past it they are read back.
PENDING_MAX = 20 * INDEX_BATCH
_BODY_INSERT = (
    "INSERT INTO message_log_body (chain, seq, kid, nonce, request_body, response_body) VALUES "
)
_SUBJECT_INSERT = "INSERT INTO message_log_subject (subject_key, chain, seq) VALUES "
_REQUEST_INSERT = "INSERT INTO message_log_request (request_key, chain, seq) VALUES "
_MOVE_MARK = (
    "INSERT INTO message_log_indexed (name, last_seq) VALUES ({name}, {seq})"
    " ON CONFLICT (name) DO UPDATE SET last_seq = excluded.last_seq"
)


def _other_literal(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, bytes | bytearray | memoryview):
        return f"'\\x{bytes(v).hex()}'"
    if isinstance(v, str):
        return "'" + str(v).replace("'", "''") + "'"
    raise TypeError(f"no SQL literal for a {type(v).__name__} in the message log")


def literal(v: Any) -> str:
    """One value as an SQL literal (see :func:`values_sql`)."""
    return "NULL" if v is None else _other_literal(v)


def values_sql(rows: Iterable[Sequence[Any]]) -> str:
    """``(...),(...)``: each row as SQL literals, for a connection with
    ``standard_conforming_strings`` on (a string's quotes doubled; a backslash is itself).
    Strings and NULL inline (nearly every value), the rest by :func:`_other_literal`."""
    return ",".join(
        [
            "("
            + ",".join(
                [
                    "NULL"
                    if v is None
                    else "'" + v.replace("'", "''") + "'"
                    if type(v) is str
                    else _other_literal(v)
                    for v in row
                ]
            )
            + ")"
            for row in rows
        ]
    )


def _entries(entries: list[tuple[int, str, int]], chain: str) -> str:
    """Lookup entries (key, chain, seq) as SQL values, the chain's literal given."""
    return ",".join([f"({int(key)},{chain},{int(seq)})" for key, _c, seq in entries])


class ChainInUse(RuntimeError):
    """Another live writer writes this chain."""


class PostgresLog:
    """The unnamed chain behind a transaction lock per batch; a named chain behind a session
    lock taken once, its tail known to its writer, so that a batch is one INSERT and COMMIT."""

    def __init__(self, url: str, chain: str = "") -> None:
        import psycopg

        self.chain = chain
        # A connection cut off from the server fails within seconds, not the kernel's minutes.
        self._conn = psycopg.connect(
            url,
            autocommit=False,
            connect_timeout=4,
            keepalives=1,
            keepalives_idle=2,
            keepalives_interval=1,
            keepalives_count=2,
            tcp_user_timeout=4000,
        )
        # The literals of a batch (values_sql) rely on these; the server sets no other.
        self._conn.execute("SET standard_conforming_strings = on")
        self._conn.execute("SET client_encoding = 'UTF8'")
        self._conn.commit()
        self._copy = f"COPY message_log ({_COLS}) FROM STDIN"
        self._insert = f"INSERT INTO message_log ({_COLS}) VALUES "
        self._mark = mark_name(chain)
        self._known: tuple[int, str] | None = None  # a named chain's tail, once read
        # A named chain's committed records not yet indexed, (seq, subject_ref, request_id), of
        # consecutive seqs; and its mark as this writer last read or moved it (None: unknown).
        self._pending: list[tuple[int, str | None, str]] = []
        self._indexed: int | None = None
        if chain:
            self._lock_chain(chain)

    def _lock_chain(self, chain: str) -> None:
        """Hold the chain's session lock. A writer that just died may still hold it a moment
        (until the server sees its connection close), so try for a few seconds; then the
        holder is taken for a session the server has not seen die (a network cut off its
        writer, which has reconnected since, or is this one) and is ended. That is safe:
        a writer whose session is ended cannot commit, and reads its chain's tail again
        when it reconnects."""
        deadline = time.monotonic() + CHAIN_LOCK_SECONDS
        ended = False
        while True:
            with self._conn.cursor() as cur:
                row = cur.execute(_PG_CHAIN_LOCK_SQL, (chain,)).fetchone()
            self._conn.commit()
            if row and row[0]:
                return
            if time.monotonic() > deadline:
                if ended:
                    self._conn.close()
                    raise ChainInUse(f"the log chain {chain!r} is held by another writer")
                ended = True
                deadline = time.monotonic() + 2.0
                with self._conn.cursor() as cur:
                    cur.execute(_PG_END_HOLDER_SQL, (chain,))
                self._conn.commit()
                log.warning("ended a stale session holding the log chain %r", chain)
            time.sleep(0.1)

    def _tail(self) -> tuple[int, str]:
        c = (self.chain,)
        with self._conn.cursor() as cur:
            row = (
                cur.execute(_q(_TAIL_SQL, "%s"), c).fetchone()
                or cur.execute(_q(_ARCHIVE_TAIL_SQL, "%s"), c).fetchone()
            )
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def tail(self) -> tuple[int, str]:
        try:
            tail = self._tail()
        finally:
            self._conn.rollback()
        if self.chain:  # held by this writer alone: it stays so until this writer appends
            self._known = tail
        return tail

    def register(self) -> None:
        with self._conn.cursor() as cur:
            cur.execute(_q(_REGISTER_SQL, "%s"), (self.chain, _now()))
        self._conn.commit()

    def append(self, records: list[dict[str, Any]], bodies: list[Body | None]) -> None:
        if not self.chain:
            self._append_locked(records, bodies)
            return
        prepared = _prepare(records, self.chain)
        chain = self.chain
        try:
            tail = self._known or self.tail()
            statement = self._insert + values_sql(_chain(records, prepared, *tail))
            body_rows = [(chain, r["seq"], *b) for r, b in zip(records, bodies, strict=True) if b]
            if body_rows:
                statement += ";" + _BODY_INSERT + values_sql(body_rows)
            self._run(statement)
        except BaseException:
            self._known = None  # perhaps committed after all: read it again
            self._pending.clear()  # and what is not indexed, from the log itself
            self._settle()
            raise
        self._known = (records[-1]["seq"], records[-1]["hash"])
        if len(self._pending) + len(records) <= PENDING_MAX:
            self._pending += [(r["seq"], r["subject_ref"], r["request_id"]) for r in records]
        else:  # indexing has fallen behind: read the rest back
            self._pending.clear()

    def _run(self, statement: str) -> None:
        """Statements in one query: one round trip, one transaction, committed before the
        answer comes (libpq's PQexec, which lets other threads run meanwhile)."""
        from psycopg import errors, pq

        if self._conn.pgconn.parameter_status(b"standard_conforming_strings") != b"on":
            raise errors.InterfaceError("the log's literals need standard_conforming_strings on")
        if "\x00" in statement:
            raise errors.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
        result = self._conn.pgconn.exec_(statement.encode())
        if result.status != pq.ExecStatus.COMMAND_OK:
            raise errors.error_from_result(result, encoding="utf-8")

    def _settle(self) -> None:
        """Leave no transaction open after a failure (if the connection still works)."""
        from psycopg import pq

        if self._conn.pgconn.transaction_status != pq.TransactionStatus.IDLE:
            try:
                self._conn.rollback()
            except Exception:
                log.debug("rolling back after a failed batch failed", exc_info=True)

    def _append_locked(self, records: list[dict[str, Any]], bodies: list[Body | None]) -> None:
        """The unnamed chain: lock, read the tail, insert, commit."""
        c = self._conn
        prepared = _prepare(records, self.chain)
        try:
            with c.cursor() as cur:
                cur.execute(PG_LOCK_SQL)
                tail = self._tail()
                # COPY: a third of executemany's CPU and a quarter of its time for a batch
                with cur.copy(self._copy) as copy:
                    for row in _chain(records, prepared, *tail):
                        copy.write_row(row)
                body_rows = [("", r["seq"], *b) for r, b in zip(records, bodies, strict=True) if b]
                if body_rows:
                    cur.executemany(_q(_BODY_SQL, "%s"), body_rows)
            c.commit()
        except BaseException:
            c.rollback()
            raise

    def nonblocking_append(self) -> NonBlockingAppend | None:
        return None  # every commit is a round trip to the server

    def add_seal(self, seq: int, hash_: str, ts: str, kid: str, signature: str) -> None:
        with self._conn.cursor() as cur:
            cur.execute(_q(_SEAL_SQL, "%s"), (self.chain, seq, hash_, ts, kid, signature))
        self._conn.commit()

    def heads(self) -> list[Head]:
        try:
            with self._conn.cursor() as cur:
                return _heads(cur.execute(_CHAINS_SQL).fetchall(), cur.execute, "%s")
        finally:
            self._conn.rollback()

    def add_checkpoint(self, ts: str, heads: str, kid: str, signature: str) -> None:
        with self._conn.cursor() as cur:
            cur.execute(_q(_CHECKPOINT_SQL, "%s"), (ts, heads, kid, signature))
        self._conn.commit()

    def index_lookups(self) -> int:
        if self.chain:
            done = self._index_held()
            if done is not None:
                return done
        return self._index_read_back()

    def _index_held(self) -> int | None:
        """A named chain's next batch from the records held in memory, in one round trip, or
        None when the log itself must be read (after a start or a failure)."""
        if self._indexed is None:
            with self._conn.cursor() as cur:
                mark = cur.execute(sql(MARK_SQL, "%s"), (self._mark,)).fetchone()
            self._conn.rollback()
            self._indexed = int(mark[0] or 0) if mark else 0
        after = self._indexed
        pending = self._pending
        if pending and pending[0][0] <= after:
            del pending[: sum(1 for p in pending if p[0] <= after)]
        if not pending:
            # this writer alone writes its chain: nothing after its tail
            return 0 if self._known is not None and self._known[0] <= after else None
        if pending[0][0] != after + 1:
            return None  # a gap (a failed batch, or a start): read it back
        batch = pending[:INDEX_BATCH]
        upto = batch[-1][0]
        subjects, requests = keyed(self.chain, batch)
        chain = literal(self.chain)
        parts = [_REQUEST_INSERT + _entries(requests, chain)]
        if subjects:
            parts.append(_SUBJECT_INSERT + _entries(subjects, chain))
        parts.append(_MOVE_MARK.format(name=literal(self._mark), seq=upto))
        try:
            self._run(";".join(parts))
        except BaseException:
            self._indexed = None  # perhaps moved after all: read it again
            self._settle()
            raise
        self._indexed = upto
        del pending[: len(batch)]
        return len(batch)

    def _index_read_back(self) -> int:
        c, chain = self._conn, self.chain
        try:
            with c.cursor() as cur:
                if not chain:
                    cur.execute(PG_LOCK_SQL)
                mark = cur.execute(sql(MARK_SQL, "%s"), (self._mark,)).fetchone()
                top = cur.execute(sql(TOP_SQL, "%s"), (chain,)).fetchone()
                span = index_range(mark[0] if mark else 0, top[0] if top else 0)
                if span is not None:
                    rows = cur.execute(sql(NEW_SQL, "%s"), (chain, *span)).fetchall()
                    subjects, requests = keyed(chain, rows)
                    # COPY, not INSERT ... ON CONFLICT: the mark moves in this transaction and
                    # only the chain's writer (or, in the unnamed chain, the lock's holder)
                    # indexes it, so no entry after the mark is there yet
                    for table, key, entries in (
                        ("message_log_subject", "subject_key", subjects),
                        ("message_log_request", "request_key", requests),
                    ):
                        with cur.copy(f"COPY {table} ({key}, chain, seq) FROM STDIN") as copy:
                            for entry in entries:
                                copy.write_row(entry)
                    cur.execute(sql(MOVE_MARK_SQL, "%s"), (self._mark, span[1]))
            c.commit()
        except BaseException:
            self._indexed = None
            c.rollback()
            raise
        if span is None:
            self._indexed = int(mark[0] or 0) if mark else 0
            return 0
        self._indexed = span[1]
        return span[1] - span[0]

    def checkpoint(self) -> None:
        """PostgreSQL checkpoints by itself."""

    def last_sealed_seq(self) -> int:
        with self._conn.cursor() as cur:
            row = cur.execute(_q(_SEALED_SQL, "%s"), (self.chain,)).fetchone()
        self._conn.rollback()
        return int(row[0] or 0) if row else 0

    def ping(self) -> None:
        with self._conn.cursor() as cur:
            cur.execute("SELECT 1")
        self._conn.rollback()

    def close(self) -> None:
        self._conn.close()
