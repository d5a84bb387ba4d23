"""A named chain on PostgreSQL: each batch is one query of SQL literals, committed in one round
trip, and its lookup entries are written from the records the writer holds. Every value comes
back exactly as it went in, a bad value fails its batch and nothing else, and a writer killed
with records not yet indexed leaves nothing out of the index once its chain is written again."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dargah.bus.log.chain import FIELDS
from dargah.bus.log.lookup import lookup_key
from dargah.bus.log.postgres import PostgresLog
from dargah.bus.log.verify import verify_log
from dargah.bus.log.writer import LogWriter
from tests.log_factory import LogDB, append_many, make_record, open_logdb, run_writers

ROOT = Path(__file__).resolve().parent.parent
AWKWARD = (
    "it's",
    "''",
    "\\",
    "\\x41\\'",
    "$$; DROP TABLE message_log; --",
    "line\nbreak\ttab\rreturn",
    "دسترسی کاربر «الف»",
    "\U0001f512 E'\\n'",
)


def pg_url(db: LogDB) -> str:
    return db.settings.db_url.replace("postgresql+psycopg://", "postgresql://", 1)


def entries(db: LogDB, table: str, key: str, chain: str) -> list[tuple[int, int]]:
    rows = db.rows(f"SELECT {key}, seq FROM {table} WHERE chain = :c ORDER BY seq", c=chain)
    return [(int(k), int(s)) for k, s in rows]


def index_complete(db: LogDB, chain: str) -> bool:
    records = db.rows(
        "SELECT subject_ref, request_id, seq FROM message_log WHERE chain = :c ORDER BY seq",
        c=chain,
    )
    subjects = [(lookup_key(ref), seq) for ref, _rid, seq in records if ref is not None]
    requests = [(lookup_key(rid), seq) for _ref, rid, seq in records]
    return (
        entries(db, "message_log_subject", "subject_key", chain) == subjects
        and entries(db, "message_log_request", "request_key", chain) == requests
    )


def test_every_value_of_a_batch_comes_back_exactly(pg_database_url: str) -> None:
    with open_logdb(Path(tempfile.mkdtemp()) / "home", pg_database_url) as db:
        sent: list[dict[str, Any]] = []
        for i, text in enumerate(AWKWARD):
            rec = make_record(i)
            rec.update(path=f"/persons/{text}", purpose=text, user=text, request_id=text)
            sent.append(rec)
        bodies = [(f"k{i}", b"\x00\\'\xff" * (i + 1), b"'\x00", None) for i in range(len(sent))]

        async def body(w: LogWriter) -> None:
            import asyncio

            await asyncio.gather(*(w.append(r, b) for r, b in zip(sent, bodies, strict=True)))

        run_writers([db.writer(chain="node-q-0")], body)
        cols = ", ".join(f'"{f}"' for f in FIELDS)
        rows = db.rows(f"SELECT {cols} FROM message_log WHERE chain = 'node-q-0' ORDER BY seq")
        assert [dict(zip(FIELDS, row, strict=True)) for row in rows] == [
            {f: r.get(f) for f in FIELDS} for r in sent
        ]
        stored = db.rows(
            "SELECT kid, nonce, request_body, response_body FROM message_log_body"
            " WHERE chain = 'node-q-0' ORDER BY seq"
        )
        assert [(k, bytes(n), bytes(q), p) for k, n, q, p in stored] == bodies
        assert index_complete(db, "node-q-0")
        assert verify_log(db.engine).ok


def test_a_value_postgresql_cannot_hold_fails_its_batch_alone(pg_database_url: str) -> None:
    with open_logdb(Path(tempfile.mkdtemp()) / "home", pg_database_url) as db:
        log = PostgresLog(pg_url(db), "node-n-0")
        try:
            log.register()
            log.append([make_record(1)], [None])
            bad = make_record(2)
            bad["user"] = "nul\x00byte"
            with pytest.raises(psycopg.DataError):
                log.append([make_record(3), bad], [None, None])
            log.append([make_record(4)], [None])
            while log.index_lookups():
                pass
        finally:
            log.close()
        seqs = db.rows("SELECT seq FROM message_log WHERE chain = 'node-n-0' ORDER BY seq")
        assert [s for (s,) in seqs] == [1, 2]
        assert index_complete(db, "node-n-0")
        assert verify_log(db.engine).ok


KILLED_WRITER = """
import os, signal, sys
from dargah.bus.log.postgres import PostgresLog
from tests.log_factory import make_record

log = PostgresLog(sys.argv[1], "node-k-0")
log.register()
for b in range(5):
    log.append([make_record(b * 20 + i) for i in range(20)], [None] * 20)
assert log.index_lookups() == 100  # from the records held in memory
for b in range(5, 10):
    log.append([make_record(b * 20 + i) for i in range(20)], [None] * 20)
os.kill(os.getpid(), signal.SIGKILL)  # 100 records committed, not yet indexed
"""


def test_a_writer_killed_before_indexing_leaves_the_index_complete_after_restart(
    pg_database_url: str,
) -> None:
    with open_logdb(Path(tempfile.mkdtemp()) / "home", pg_database_url) as db:
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(KILLED_WRITER), pg_url(db)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        mark = "SELECT last_seq FROM message_log_indexed WHERE name = 'lookup:node-k-0'"
        assert db.scalar(mark) == 100
        assert db.scalar("SELECT COUNT(*) FROM message_log WHERE chain = 'node-k-0'") == 200
        assert not index_complete(db, "node-k-0")

        async def body(w: LogWriter) -> None:
            await append_many(w, 30, start=500)

        run_writers([db.writer(chain="node-k-0")], body)
        assert db.scalar(mark) == 230
        assert index_complete(db, "node-k-0")
        assert verify_log(db.engine).ok
