"""The group-commit writer: one gap-free chain, group commits, seals, fail closed.

Real writers on their own threads against real SQLite files and PostgreSQL
schemas; two writers on one database stand for two bus processes.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from dargah.bus.log.verify import verify_log
from dargah.bus.log.writer import LogUnavailable, LogWriter
from tests.log_factory import LogDB, append_many, make_record, open_logdb, run_writers


@pytest.fixture
def db(tmp_path: Path, database_url: str) -> Iterator[LogDB]:
    with open_logdb(tmp_path / "home", database_url) as db:
        yield db


def seal_seqs(db: LogDB) -> list[int]:
    return sorted({row[0] for row in db.rows("SELECT seq FROM message_log_seal")})


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


def test_concurrent_appends_get_unique_gap_free_seqs(db: LogDB) -> None:
    seqs = run_writers([db.writer()], lambda w: append_many(w, 500))
    assert sorted(seqs) == list(range(1, 501))
    report = verify_log(db.engine)
    assert report.ok and report.records == 500 and report.warnings == []


def test_appends_under_concurrency_are_committed_in_groups(db: LogDB) -> None:
    writer = db.writer()
    run_writers([writer], lambda w: append_many(w, 600))
    assert writer.committed == 600
    assert writer.batches < 600 // 4


def test_two_writers_on_one_database_interleave_into_one_valid_chain(db: LogDB) -> None:
    a, b = db.writer(seal_every_records=30), db.writer(seal_every_records=30)

    async def body(a: LogWriter, b: LogWriter) -> list[int]:
        seqs: list[int] = []
        for wave in range(8):  # waves, so that the two writers' batches interleave
            calls = [(a if i % 2 else b).append(make_record(wave * 50 + i)) for i in range(50)]
            seqs += await asyncio.gather(*calls)
        return seqs

    seqs = run_writers([a, b], body)
    assert sorted(seqs) == list(range(1, 401))
    assert a.committed == b.committed == 200
    report = verify_log(db.engine)
    assert report.ok, report.failure_line()
    assert report.records == 400 and report.last_sealed_seq == 400
    owners = [row[0] for row in db.rows("SELECT request_id FROM message_log ORDER BY seq")]
    assert len(set(owners)) == 400


def test_seals_are_written_at_least_every_n_records(db: LogDB) -> None:
    run_writers([db.writer(seal_every_records=25)], lambda w: append_many(w, 260, concurrent=False))
    seals = seal_seqs(db)
    gaps = [b - a for a, b in zip([0, *seals], seals, strict=False)]
    assert max(gaps) <= 25, seals
    assert seals[-1] == 260


def test_light_traffic_is_sealed_after_a_few_seconds_without_a_stop(db: LogDB) -> None:
    async def body(w: LogWriter) -> None:
        await append_many(w, 3)
        await wait_until(lambda: 3 in seal_seqs(db), timeout=5)

    run_writers([db.writer(seal_every_records=1000, seal_every_seconds=0.2)], body)


def test_a_starting_writer_seals_the_tail_left_by_a_crash(db: LogDB) -> None:
    run_writers([db.writer()], lambda w: append_many(w, 30))
    db.sql("DELETE FROM message_log_seal")  # as if the process died before sealing
    assert verify_log(db.engine).warnings

    async def nothing(w: LogWriter) -> None:
        assert seal_seqs(db) == [30]  # sealed at start, before any append

    run_writers([db.writer()], nothing)
    report = verify_log(db.engine)
    assert report.ok and report.warnings == [] and report.last_sealed_seq == 30


def test_the_writer_fails_closed_while_the_log_is_unusable_and_recovers_by_itself(
    db: LogDB, tmp_path: Path
) -> None:
    tag = f"dargah_{secrets.token_hex(4)}"
    url = db.settings.db_url
    if not db.is_sqlite:  # name the writer's connection, to cut it off below
        url += f"&application_name={tag}"
    home = db.settings.home
    away = tmp_path / "home-away"

    def break_log() -> None:
        db.sql("ALTER TABLE message_log RENAME TO message_log_away")
        if db.is_sqlite:  # and the database file is gone: reconnecting fails too
            db.engine.dispose()
            home.rename(away)
        else:  # and the connection is cut
            db.sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = :tag",
                tag=tag,
            )

    def repair_log() -> None:
        if db.is_sqlite:
            away.rename(home)
        db.sql("ALTER TABLE message_log_away RENAME TO message_log")

    async def body(w: LogWriter) -> None:
        assert len(await append_many(w, 20)) == 20
        await asyncio.to_thread(break_log)
        with pytest.raises(LogUnavailable):
            await w.append(make_record(20))
        assert not w.healthy
        await asyncio.sleep(1.5)  # it keeps trying to reconnect, and keeps failing
        with pytest.raises(LogUnavailable):
            await w.append(make_record(21))
        await asyncio.to_thread(repair_log)
        await wait_until(lambda: w.healthy)
        assert await append_many(w, 10, start=30) == list(range(21, 31))

    run_writers([db.writer(db_url=url)], body)
    report = verify_log(db.engine)
    assert report.ok and report.records == 30 and report.warnings == []


def test_a_writer_that_cannot_open_its_database_does_not_start(tmp_path: Path) -> None:
    with open_logdb(tmp_path / "home") as db:
        writer = db.writer(db_url=f"sqlite:///{tmp_path / 'removed' / 'dargah.db'}")
        loop = asyncio.new_event_loop()
        with pytest.raises(Exception, match="unable to open database file"):
            writer.start(loop)
        loop.close()
        assert not writer.healthy

        async def refused() -> None:
            await writer.append(make_record(1))

        with pytest.raises(LogUnavailable):
            asyncio.run(refused())
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM message_log")).scalar() == 0
