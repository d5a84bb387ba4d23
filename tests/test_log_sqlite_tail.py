"""SQLite's log backend reads the chain's tail only when another connection has committed since
its own last commit: connections that take turns, and other writers of the database in between,
still make one valid chain.

Real backends on real SQLite files, as two bus processes and the registry would use them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dargah.bus.log.backends import open_backend
from dargah.bus.log.verify import verify_log
from tests.log_factory import LogDB, make_record, open_logdb


@pytest.fixture
def db(tmp_path: Path) -> Iterator[LogDB]:
    with open_logdb(tmp_path / "home") as db:
        yield db


def test_connections_taking_turns_and_other_writers_keep_one_valid_chain(db: LogDB) -> None:
    a = open_backend(db.settings.db_url, "process")
    b = open_backend(db.settings.db_url, "process")
    try:
        n = 0
        # a, a, b, a, b, b, ...: each batch must follow whichever connection wrote last
        for turn, backend in enumerate([a, a, b, a, b, b, a, b, a, a]):
            records = [make_record(n + i) for i in range(turn % 3 + 1)]
            if turn % 2:
                append = backend.nonblocking_append()
                assert append is not None and append(records, [None] * len(records))
            else:
                backend.append(records, [None] * len(records))
            n += len(records)
            assert [r["seq"] for r in records] == list(range(n - len(records) + 1, n + 1))
            if turn == 4:  # another writer of the database, not of the log
                db.sql("INSERT INTO instance_meta (key, value) VALUES ('tail-test', 'x')")
            if turn == 7:  # the same connection's own work besides records
                a.index_lookups()
                a.register()
        assert a.tail() == b.tail() == (n, records[-1]["hash"])
    finally:
        a.close()
        b.close()
    seqs = [row[0] for row in db.rows("SELECT seq FROM message_log ORDER BY seq")]
    assert seqs == list(range(1, n + 1))
    report = verify_log(db.engine)
    assert report.ok, report.failure_line()
    assert report.records == n


def test_a_record_written_behind_the_writers_back_is_chained_after(db: LogDB) -> None:
    """A tail changed by another connection (here: the last record removed, as a restore
    might) is read again, not taken from memory."""
    a = open_backend(db.settings.db_url, "process")
    try:
        a.append([make_record(0), make_record(1), make_record(2)], [None] * 3)
        db.sql("DELETE FROM message_log WHERE seq = 3")
        records = [make_record(3)]
        a.append(records, [None])
        assert records[0]["seq"] == 3
        assert a.tail() == (3, records[0]["hash"])
    finally:
        a.close()
    report = verify_log(db.engine)
    assert report.ok, report.failure_line()
    assert report.records == 3
