"""Who commits: the event loop itself (SQLite, ``process``) or the writer's thread (``power``).

Real writers against real SQLite files. Another process holding the log is
stood for by this test holding the log's lock file, as a bus process does.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dargah.bus.log import writer as writer_module
from dargah.bus.log.backends import SqliteLog
from dargah.bus.log.verify import verify_log
from dargah.bus.log.writer import LogUnavailable, LogWriter
from tests.log_factory import LogDB, append_many, make_record, open_logdb, run_writers


@pytest.fixture
def db(tmp_path: Path) -> Iterator[LogDB]:
    with open_logdb(tmp_path / "home") as db:
        yield db


class LogLock:
    """The log's lock file, held the way another bus process's writer holds it."""

    def __init__(self, db: LogDB) -> None:
        path = db.settings.db_url.removeprefix("sqlite:///")
        self.fd = os.open(f"{path}-loglock", os.O_RDWR | os.O_CREAT, 0o600)

    def take(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self.fd)


async def ticks_during(seconds: float) -> int:
    """How many times a 10 ms sleep came back: the event loop was free to run other work."""
    n = 0
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
        n += 1
    return n


def test_the_event_loop_waits_for_another_writer_without_blocking(db: LogDB) -> None:
    lock = LogLock(db)

    async def body(w: LogWriter) -> None:
        assert await append_many(w, 5) == [1, 2, 3, 4, 5]
        batches = w.batches
        lock.take()
        try:
            first = asyncio.ensure_future(w.append(make_record(5)))
            await asyncio.sleep(0.05)
            more = [asyncio.ensure_future(w.append(make_record(6 + i))) for i in range(9)]
            # The loop keeps serving while the log is held elsewhere, and commits nothing.
            assert await ticks_during(0.3) >= 15
            assert not first.done() and not any(f.done() for f in more)
        finally:
            lock.release()
        seqs = [await first] + [await f for f in more]
        assert seqs == list(range(6, 16))
        assert w.batches == batches + 1  # the ten that waited went in one commit

    run_writers([db.writer()], body)
    lock.close()
    report = verify_log(db.engine)
    assert report.ok and report.records == 15


def test_a_batch_kept_out_of_the_log_too_long_is_refused(
    db: LogDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "BUSY_SECONDS", 0.4)
    lock = LogLock(db)

    async def body(w: LogWriter) -> None:
        await append_many(w, 3)
        lock.take()
        try:
            with pytest.raises(LogUnavailable, match="stayed locked"):
                await asyncio.wait_for(w.append(make_record(3)), 5)
            with pytest.raises(LogUnavailable):  # fail closed until the writer is back
                await w.append(make_record(4))
        finally:
            lock.release()
        for _ in range(100):
            if w.healthy:
                break
            await asyncio.sleep(0.05)
        assert w.healthy
        assert await append_many(w, 2, start=10) == [4, 5]

    run_writers([db.writer()], body)
    lock.close()
    report = verify_log(db.engine)
    assert report.ok and report.records == 5


@pytest.mark.parametrize("durability", ["process", "power"])
def test_two_writers_share_one_chain_in_either_mode(db: LogDB, durability: str) -> None:
    a = db.writer(durability=durability, seal_every_records=40)
    b = db.writer(durability=durability, seal_every_records=40)
    lock = LogLock(db)

    async def body(a: LogWriter, b: LogWriter) -> list[int]:
        seqs: list[int] = []
        for wave in range(6):
            if wave == 3:  # a third writer holds the log a moment: both wait, then go on
                lock.take()
                asyncio.get_running_loop().call_later(0.2, lock.release)
            calls = [(a if i % 2 else b).append(make_record(wave * 40 + i)) for i in range(40)]
            seqs += await asyncio.gather(*calls)
        return seqs

    seqs = run_writers([a, b], body)
    lock.close()
    assert sorted(seqs) == list(range(1, 241))
    report = verify_log(db.engine)
    assert report.ok, report.failure_line()
    assert report.records == 240 and report.last_sealed_seq == 240
    seals = sorted({row[0] for row in db.rows("SELECT seq FROM message_log_seal")})
    assert max(y - x for x, y in zip([0, *seals], seals, strict=False)) <= 80


def test_with_power_records_are_flushed_and_seals_and_index_batches_are_not(db: LogDB) -> None:
    path = db.settings.db_url.removeprefix("sqlite:///")
    backend = SqliteLog(path, "power")
    conn = backend._conn  # what a commit of this connection does is its synchronous setting
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        records = [make_record(i) for i in range(5)]
        backend.append(records, [None] * 5)
        assert backend.index_lookups() == 5
        backend.add_seal(5, records[-1]["hash"], "2026-11-28T10:00:00.000000Z", "k", "s")
        backend.append([make_record(5)], [None])
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again
    finally:
        conn.set_trace_callback(None)
        backend.close()
    # The index batch and the seal ran between a switch to NORMAL and back to FULL.
    switches = [s for s in statements if s.startswith("PRAGMA synchronous=")]
    assert switches == ["PRAGMA synchronous=NORMAL", "PRAGMA synchronous=FULL"] * 2
    seal = next(i for i, s in enumerate(statements) if "message_log_seal" in s)
    assert statements[seal - 1] == "PRAGMA synchronous=NORMAL"
    assert db.rows("SELECT COUNT(*) FROM message_log")[0][0] == 6
