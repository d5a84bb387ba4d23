"""The lookup indexes (by subject and by request id) are kept behind the log: complete after a
writer stops, kept up by a running writer, and emptied of what an archive takes away."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from dargah.bus.log.archive import archive_log
from dargah.bus.log.lookup import lookup_key
from dargah.bus.log.writer import LogWriter
from tests.log_factory import LogDB, append_many, build_log, open_logdb, run_writers

INDEXED = "SELECT subject_key, seq FROM message_log_subject ORDER BY seq"
EXPECTED = "SELECT subject_ref, seq FROM message_log WHERE subject_ref IS NOT NULL ORDER BY seq"
INDEXED_REQUESTS = "SELECT request_key, seq FROM message_log_request ORDER BY seq"
EXPECTED_REQUESTS = "SELECT request_id, seq FROM message_log ORDER BY seq"


def expected(db: LogDB) -> list[tuple[int, int]]:
    return [(lookup_key(ref), seq) for ref, seq in db.rows(EXPECTED)]


def expected_requests(db: LogDB) -> list[tuple[int, int]]:
    return [(lookup_key(rid), seq) for rid, seq in db.rows(EXPECTED_REQUESTS)]


def both_complete(db: LogDB) -> bool:
    return [tuple(r) for r in db.rows(INDEXED)] == expected(db) and [
        tuple(r) for r in db.rows(INDEXED_REQUESTS)
    ] == expected_requests(db)


MARK = "SELECT last_seq FROM message_log_indexed WHERE name = 'lookup'"


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
        assert both_complete(db)
        assert len(db.rows(INDEXED_REQUESTS)) == 340


def test_an_archive_takes_its_records_out_of_the_index(tmp_path: Path, database_url: str) -> None:
    with open_logdb(tmp_path / "home", database_url) as db:
        build_log(db, 400)
        assert len(db.rows(INDEXED)) == 400
        assert len(db.rows(INDEXED_REQUESTS)) == 400
        made = archive_log(db.engine, db.settings, before_seq=200)
        assert made is not None and made.last_seq > 1
        assert both_complete(db)
        for query in (INDEXED, INDEXED_REQUESTS):
            left = [tuple(r) for r in db.rows(query)]
            assert min(seq for _key, seq in left) == made.last_seq + 1


def test_the_upgrade_indexes_what_was_logged_before_it(tmp_path: Path, database_url: str) -> None:
    from alembic import command

    from dargah.store.db import alembic_config

    with open_logdb(tmp_path / "home", database_url) as db:
        build_log(db, 120)
        cfg = alembic_config(db.engine)
        command.downgrade(cfg, "0010")  # the log as it was, indexed on subject_ref and request_id
        assert db.rows("SELECT COUNT(*) FROM message_log")[0][0] == 120
        command.upgrade(cfg, "head")
        assert both_complete(db)
        assert db.scalar(MARK) == 120


def test_the_upgrade_indexes_request_ids_up_to_the_subject_mark(
    tmp_path: Path, database_url: str
) -> None:
    """From the subject index alone: request ids are indexed as far as subjects were, and the
    writers index the rest of both."""
    from alembic import command

    from dargah.store.db import alembic_config

    with open_logdb(tmp_path / "home", database_url) as db:
        build_log(db, 120)
        cfg = alembic_config(db.engine)
        command.downgrade(cfg, "0011")
        db.sql("UPDATE message_log_indexed SET last_seq = 90 WHERE name = 'subject'")
        db.sql("DELETE FROM message_log_subject WHERE seq > 90")
        command.upgrade(cfg, "head")
        assert db.scalar(MARK) == 90
        assert [tuple(r) for r in db.rows(INDEXED_REQUESTS)] == expected_requests(db)[:90]

        async def nothing(_w: LogWriter) -> None:
            return None

        run_writers([db.writer()], nothing)  # a writer's start and stop index what is left
        assert db.scalar(MARK) == 120
        assert both_complete(db)
