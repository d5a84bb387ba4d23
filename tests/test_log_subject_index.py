"""The index by subject is kept behind the log: complete after a writer stops, kept up by a
running writer, and emptied of what an archive takes away."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from dargah.bus.log.archive import archive_log
from dargah.bus.log.subjects import subject_key
from dargah.bus.log.writer import LogWriter
from tests.log_factory import LogDB, append_many, build_log, open_logdb, run_writers

INDEXED = "SELECT subject_key, seq FROM message_log_subject ORDER BY seq"
EXPECTED = "SELECT subject_ref, seq FROM message_log WHERE subject_ref IS NOT NULL ORDER BY seq"


def expected(db: LogDB) -> list[tuple[int, int]]:
    return [(subject_key(ref), seq) for ref, seq in db.rows(EXPECTED)]


MARK = "SELECT last_seq FROM message_log_indexed WHERE name = 'subject'"


def test_a_running_writer_indexes_within_seconds_and_a_stop_completes_it(
    tmp_path: Path, database_url: str
) -> None:
    with open_logdb(tmp_path / "home", database_url) as db:

        async def body(w: LogWriter) -> tuple[int, int]:
            await append_many(w, 300)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (db.scalar(MARK) or 0) < 300:
                await asyncio.sleep(0.1)
            first = int(db.scalar(MARK) or 0)
            await append_many(w, 40, start=300)  # indexed by the stop, if not before
            return first, len(db.rows(INDEXED))

        mark, count = run_writers([db.writer()], body)
        assert mark == 300, "a running writer brings the index up within a few seconds"
        assert count == 300
        assert db.scalar(MARK) == 340
        assert [tuple(r) for r in db.rows(INDEXED)] == expected(db)


def test_an_archive_takes_its_records_out_of_the_index(tmp_path: Path, database_url: str) -> None:
    with open_logdb(tmp_path / "home", database_url) as db:
        build_log(db, 400)
        assert len(db.rows(INDEXED)) == 400
        made = archive_log(db.engine, db.settings, before_seq=200)
        assert made is not None and made.last_seq > 1
        left = [tuple(r) for r in db.rows(INDEXED)]
        assert left == expected(db)
        assert min(seq for _ref, seq in left) == made.last_seq + 1


def test_the_upgrade_indexes_what_was_logged_before_it(tmp_path: Path, database_url: str) -> None:
    from alembic import command

    from dargah.store.db import alembic_config

    with open_logdb(tmp_path / "home", database_url) as db:
        build_log(db, 120)
        cfg = alembic_config(db.engine)
        command.downgrade(cfg, "0010")  # the log as it was, with its index on subject_ref
        assert db.rows("SELECT COUNT(*) FROM message_log")[0][0] == 120
        command.upgrade(cfg, "head")
        assert [tuple(r) for r in db.rows(INDEXED)] == expected(db)
        assert db.scalar(MARK) == 120
