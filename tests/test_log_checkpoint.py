"""SQLite's WAL under the log's writers: checkpointed by them between commits, outside the log's
lock, so that it stays bounded while records keep coming, and restarted when it grows past its
limit, without waiting long for a reader that holds it."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dargah.bus.log import backends
from dargah.bus.log.backends import SqliteLog
from tests.log_factory import LogDB, make_record, open_logdb


@pytest.fixture
def db(tmp_path: Path) -> Iterator[LogDB]:
    with open_logdb(tmp_path / "home") as db:
        yield db


def wal_frames(path: str) -> int:
    """Frames in the WAL file (a restarted WAL is overwritten from its start, not truncated,
    so this is its high-water mark)."""
    size = os.path.getsize(path + "-wal")
    return max(0, (size - 32) // (24 + 4096))


def append_batches(log: SqliteLog, batches: int, start: int, checkpoint_every: int) -> None:
    for b in range(batches):
        records = [make_record(start + b * 10 + i) for i in range(10)]
        log.append(records, [None] * len(records))
        if (b + 1) % checkpoint_every == 0:
            log.checkpoint()


def test_the_log_connection_leaves_checkpoints_to_the_writer(db: LogDB) -> None:
    path = str(db.settings.home / "dargah.db")
    log = SqliteLog(path, "process")
    try:
        append_batches(log, 150, 0, checkpoint_every=10**9)  # never checkpointed
        # about 2,400 frames; SQLite's own checkpoint would have restarted the WAL at 1,000
        assert wal_frames(path) > 1500, "SQLite checkpointed inside a commit"
    finally:
        log.close()


def test_checkpoints_between_commits_keep_the_wal_small(db: LogDB) -> None:
    path = str(db.settings.home / "dargah.db")
    log = SqliteLog(path, "process")
    try:
        append_batches(log, 600, 0, checkpoint_every=20)
        # 6,000 records wrote well over a thousand frames; checkpointed every 200 records the
        # WAL started over each time and stayed a fraction of that.
        assert wal_frames(path) < 1000
        with sqlite3.connect(path) as check:
            assert check.execute("SELECT COUNT(*) FROM message_log").fetchone()[0] == 6000
    finally:
        log.close()


def test_a_wal_past_its_limit_is_restarted_once_readers_let_it(
    db: LogDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader on an older snapshot stops a passive checkpoint short of the WAL's end, so the
    next commit would append to the WAL again; past the limit, the writer waits a moment for
    such a reader and restarts the WAL. A reader that stays longer only delays that."""
    monkeypatch.setattr(backends, "WAL_RESTART_FRAMES", 200)
    path = str(db.settings.home / "dargah.db")
    log = SqliteLog(path, "process")
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        append_batches(log, 30, 0, checkpoint_every=10**9)
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM message_log").fetchone()  # an older snapshot
        append_batches(log, 30, 300, checkpoint_every=10**9)
        assert wal_frames(path) > 200

        started = time.monotonic()
        log.checkpoint()  # the reader stays: the writer gives up after a moment
        assert time.monotonic() - started < 2.0
        high_water = wal_frames(path)
        append_batches(log, 3, 600, checkpoint_every=10**9)
        assert wal_frames(path) > high_water, "the WAL started over under a reader's snapshot"

        threading.Timer(0.02, reader.execute, ("COMMIT",)).start()  # leaves within the moment
        log.checkpoint()
        high_water = wal_frames(path)
        append_batches(log, 3, 630, checkpoint_every=10**9)
        assert wal_frames(path) == high_water, "the WAL did not start over"
        with sqlite3.connect(path) as check:
            assert check.execute("SELECT COUNT(*) FROM message_log").fetchone()[0] == 660
    finally:
        reader.close()
        log.close()
