"""The message log on PostgreSQL (scale-out): the unnamed chain behind a transaction lock per
batch, a named chain behind a session lock its writer holds while its connection lives.

See :mod:`dargah.bus.log.backends` for what a backend does.
"""

from __future__ import annotations

import logging
import time
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
        self._copy = f"COPY message_log ({_COLS}) FROM STDIN"
        self._mark = mark_name(chain)
        self._known: tuple[int, str] | None = None  # a named chain's tail, once read
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
            return self._tail()
        finally:
            self._conn.rollback()

    def register(self) -> None:
        with self._conn.cursor() as cur:
            cur.execute(_q(_REGISTER_SQL, "%s"), (self.chain, _now()))
        self._conn.commit()

    def append(self, records: list[dict[str, Any]], bodies: list[Body | None]) -> None:
        c = self._conn
        prepared = _prepare(records, self.chain)
        try:
            with c.cursor() as cur:
                if self.chain:
                    tail = self._known or self._tail()
                else:
                    cur.execute(PG_LOCK_SQL)
                    tail = self._tail()
                # COPY: a third of executemany's CPU and a quarter of its time for a batch
                with cur.copy(self._copy) as copy:
                    for row in _chain(records, prepared, *tail):
                        copy.write_row(row)
                chain = self.chain
                body_rows = [
                    (chain, r["seq"], *b) for r, b in zip(records, bodies, strict=True) if b
                ]
                if body_rows:
                    cur.executemany(_q(_BODY_SQL, "%s"), body_rows)
            c.commit()
        except BaseException:
            self._known = None  # perhaps committed after all: read it again
            c.rollback()
            raise
        if self.chain:
            self._known = (records[-1]["seq"], records[-1]["hash"])

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
            c.rollback()
            raise
        return 0 if span is None else span[1] - span[0]

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
