"""Message-log search returns exactly what a plain filter over every record would, newest
first, on both backends, for each filter and their combinations (the indexes change how the
database finds them, never what it finds)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

from dargah.bus.log.backends import open_backend
from dargah.bus.log.lookup import lookup_mark
from dargah.bus.log.search import LogQuery, search_log
from dargah.store.tables import message_log
from tests.log_factory import open_logdb

START = datetime(2026, 11, 1, tzinfo=UTC)
OUTCOMES = ["ok"] * 6 + ["provider-error", "access-denied", "provider-timeout"]


def _records(n: int, rng: random.Random) -> list[dict[str, object]]:
    out = []
    for seq in range(1, n + 1):
        # ts is when the call started: not in seq order (slow calls commit later)
        ts = START + timedelta(seconds=seq * 10 - rng.randrange(0, 40))
        out.append(
            {
                "seq": seq,
                "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                # a few clients send the same request id again (a retry)
                "request_id": "r-again" if seq % 97 == 0 else f"r{seq}",
                "client": f"DEV/GOV/10100387143/c{rng.randrange(5)}",
                "service": f"DEV/GOV/10100345616/p/s{rng.randrange(7)}.v1",
                "method": "GET",
                "path": "/x",
                "query_hash": None,
                "purpose": "service-application",
                "subject_ref": f"{rng.randrange(30):064x}",
                "user": None,
                "status": 200,
                "outcome": rng.choice(OUTCOMES),
                "request_hash": None,
                "response_hash": None,
                "request_bytes": 0,
                "response_bytes": 0,
                "duration_us": 1,
                "prev_hash": "0" * 64,
                "hash": f"{seq:064x}",
            }
        )
    return out


@pytest.mark.parametrize("indexed", [0, 750, 1500])
def test_every_filter_finds_exactly_the_matching_records_newest_first(
    tmp_path: Path, database_url: str, indexed: int
) -> None:
    """``indexed``: how many of the records the lookup indexes (by subject and request id, kept
    behind the log) hold when the search runs; the rest are found in the log's unindexed tail."""
    rng = random.Random(7)
    rows = _records(1500, rng)
    with open_logdb(tmp_path / "home", database_url) as db:
        if indexed:
            with db.engine.begin() as conn:
                conn.execute(insert(message_log), rows[:indexed])
        backend = open_backend(db.settings.db_url, "process")
        try:
            backend.index_lookups()
        finally:
            backend.close()
        with db.engine.begin() as conn:
            if indexed < len(rows):
                conn.execute(insert(message_log), rows[indexed:])
            assert lookup_mark(conn) == indexed
        since, until = START + timedelta(hours=1), START + timedelta(hours=2)
        queries = [
            LogQuery(request_id="r77"),
            LogQuery(request_id="r1402"),
            LogQuery(request_id="r-again", limit=500),
            LogQuery(request_id="r-again", limit=3),
            LogQuery(request_id="r-again", before=1000, limit=500),
            LogQuery(request_id="r-again", client="DEV/GOV/10100387143/c2", limit=500),
            LogQuery(client="DEV/GOV/10100387143/c3", limit=500),
            LogQuery(service="DEV/GOV/10100345616/p/s2.v1", limit=500),
            LogQuery(outcome="provider-timeout", limit=500),
            LogQuery(outcome="ok", limit=40),
            LogQuery(subject_ref=f"{5:064x}", limit=500),
            LogQuery(subject_ref=f"{5:064x}", limit=7),
            LogQuery(subject_ref=f"{9:064x}", before=900, limit=500),
            LogQuery(subject_ref=f"{9:064x}", client="DEV/GOV/10100387143/c2", limit=500),
            LogQuery(subject_ref=f"{11:064x}", since=since, limit=500),
            LogQuery(since=since, until=until, limit=500),
            LogQuery(client="DEV/GOV/10100387143/c1", outcome="access-denied", limit=500),
            LogQuery(service="DEV/GOV/10100345616/p/s4.v1", since=since, limit=500),
            LogQuery(outcome="provider-error", before=700, limit=500),
        ]
        for q in queries:
            expected = [
                r["seq"]
                for r in sorted(rows, key=lambda r: -int(str(r["seq"])))
                if (q.request_id is None or r["request_id"] == q.request_id)
                and (q.client is None or r["client"] == q.client)
                and (q.service is None or r["service"] == q.service)
                and (q.outcome is None or r["outcome"] == q.outcome)
                and (q.subject_ref is None or r["subject_ref"] == q.subject_ref)
                and (q.since is None or str(r["ts"]) >= q.since.strftime("%Y-%m-%dT%H:%M:%S"))
                and (q.until is None or str(r["ts"]) < q.until.strftime("%Y-%m-%dT%H:%M:%S"))
                and (q.before is None or int(str(r["seq"])) < q.before)
            ][: q.limit]
            with db.engine.connect() as conn:
                found = [r["seq"] for r in search_log(conn, q)]
            assert found == expected, q
            assert expected, f"the constructed log has no record for {q}"


@pytest.mark.parametrize("outcome", ["provider-timeout", "access-denied"])
def test_searching_failures_uses_their_own_index_on_sqlite(tmp_path: Path, outcome: str) -> None:
    with open_logdb(tmp_path / "home") as db:
        with db.engine.connect() as conn:
            from sqlalchemy import select

            stmt = (
                select(message_log.c.seq)
                .where(message_log.c.outcome == outcome, message_log.c.outcome != "ok")
                .order_by(message_log.c.seq.desc())
                .limit(50)
            )
            sql = str(stmt.compile(conn, compile_kwargs={"literal_binds": True}))
            plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
        assert "ix_message_log_problems" in plan, plan
