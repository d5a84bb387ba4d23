"""Message-log search on millions of records: the queries an operator runs in the console.

Fills a fresh instance's log (SQLite by default, or ``--database-url`` for PostgreSQL) with
``--records`` records shaped like real traffic (50 client systems, 200 services, 200,000
citizens, 30 days, 2 % of calls failing in various ways, a seal every 1,000 records), then
times :func:`dargah.bus.log.search.search_log` for each kind of filter the console offers.
The records are written straight into the table (their hashes are not a valid chain: search
does not read them); the writer's own speed is measured by ``bench/bus_throughput.py``.

    .venv/bin/python bench/log_search.py [--records 2000000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OUTCOMES = ["ok"] * 980 + ["provider-error"] * 10 + ["access-denied"] * 5 + ["provider-timeout"] * 5


def fill(
    engine: object, n: int, rng: random.Random
) -> tuple[list[str], list[str], list[str], datetime]:
    from sqlalchemy import insert

    from dargah.store.tables import message_log, message_log_seal

    clients = [f"DEV/GOV/{10100000000 + i}/sys{i}" for i in range(50)]
    services = [f"DEV/GOV/{10200000000 + i // 4}/prov/s{i}.v1" for i in range(200)]
    subjects = [f"{rng.getrandbits(256):064x}" for _ in range(200_000)]
    start = datetime.now(UTC) - timedelta(days=30)
    step = timedelta(days=30) / n
    batch: list[dict[str, object]] = []
    seals: list[dict[str, object]] = []
    t0 = time.perf_counter()
    with engine.begin() as conn:  # type: ignore[attr-defined]
        for seq in range(1, n + 1):
            ts = (start + step * seq).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            batch.append(
                {
                    "seq": seq,
                    "ts": ts,
                    "request_id": f"{rng.getrandbits(128):032x}",
                    "client": rng.choice(clients),
                    "service": rng.choice(services),
                    "method": "GET",
                    "path": "/persons/x",
                    "query_hash": None,
                    "purpose": "service-application",
                    "subject_ref": rng.choice(subjects),
                    "user": None,
                    "status": 200,
                    "outcome": rng.choice(OUTCOMES),
                    "request_hash": None,
                    "response_hash": "0" * 64,
                    "request_bytes": 0,
                    "response_bytes": 246,
                    "duration_us": 900,
                    "prev_hash": "0" * 64,
                    "hash": f"{seq:064x}",
                }
            )
            if seq % 1000 == 0:
                seals.append(
                    {
                        "seq": seq,
                        "hash": f"{seq:064x}",
                        "ts": ts,
                        "kid": "seal-bench",
                        "signature": "x",
                    }
                )
            if len(batch) == 20_000:
                conn.execute(insert(message_log), batch)
                batch.clear()
                print(
                    f"\r  {seq:,} records written ({time.perf_counter() - t0:.0f} s)",
                    end="",
                    file=sys.stderr,
                )
        if batch:
            conn.execute(insert(message_log), batch)
        conn.execute(insert(message_log_seal), seals)
    print(file=sys.stderr)
    return clients, services, subjects, start


UNINDEXED = 2_000  # the newest records, not in the index by subject yet (a bus indexes 4 times a
# second; 2,000 records is a quarter of a second at 8,000 calls a second)


def index_lookups(db_url: str, n: int) -> None:
    """Build the index by subject as the bus's log writers do, then leave the newest
    UNINDEXED records out of it, as a running bus would."""
    from sqlalchemy import create_engine, text

    from dargah.bus.log.backends import open_backend

    backend = open_backend(db_url, "process")
    t0, cpu0 = time.perf_counter(), time.process_time()
    done = 0
    while covered := backend.index_lookups():
        done += covered
        print(f"\r  {done:,} records indexed by subject", end="", file=sys.stderr)
    backend.close()
    cpu = time.process_time() - cpu0
    print(
        f"\r  index by subject: {n:,} records in {time.perf_counter() - t0:.1f} s "
        f"({cpu / n * 1e6:.1f} us of CPU per record, in batches as the bus writes them)",
        file=sys.stderr,
    )
    engine = create_engine(db_url)
    with engine.begin() as conn:
        mark = n - UNINDEXED
        conn.execute(text("DELETE FROM message_log_subject WHERE seq > :m"), {"m": mark})
        conn.execute(
            text("UPDATE message_log_indexed SET last_seq = :m WHERE name = 'subject'"), {"m": mark}
        )
    engine.dispose()


def main() -> int:
    from dargah.bus.log.search import LogQuery, search_log
    from dargah.core.settings import Settings
    from dargah.registry.instance import open_instance
    from dargah.store.tables import message_log

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="dargah-logsearch-"))
    engine, _info, _ = open_instance(Settings(home=home, database_url=args.database_url))
    rng = random.Random(1404)
    t = time.perf_counter()
    clients, services, _subjects, start = fill(engine, args.records, rng)
    print(f"{args.records:,} records written in {time.perf_counter() - t:.0f} s")
    index_lookups(Settings(home=home, database_url=args.database_url).db_url, args.records)
    from sqlalchemy import select

    with engine.connect() as conn:
        picks = conn.execute(
            select(message_log.c.request_id, message_log.c.subject_ref).where(
                message_log.c.seq % 99991 == 7
            )
        ).all()
    week_ago = start + timedelta(days=23)
    cases = {
        "request id": lambda: LogQuery(request_id=rng.choice(picks)[0]),
        "citizen (subject_ref)": lambda: LogQuery(subject_ref=rng.choice(picks)[1]),
        "client, newest": lambda: LogQuery(client=rng.choice(clients)),
        "service, newest": lambda: LogQuery(service=rng.choice(services)),
        "outcome provider-timeout": lambda: LogQuery(outcome="provider-timeout"),
        "client + outcome": lambda: LogQuery(client=rng.choice(clients), outcome="provider-error"),
        "one hour, a week ago": lambda: LogQuery(
            since=week_ago, until=week_ago + timedelta(hours=1)
        ),
        "service, one day, a week ago": lambda: LogQuery(
            service=rng.choice(services), since=week_ago, until=week_ago + timedelta(days=1)
        ),
    }
    print(f"\n{'query':<32}{'p50 ms':>9}{'p95 ms':>9}{'rows':>7}")
    worst = 0.0
    for name, make in cases.items():
        times, rows = [], 0
        for _ in range(args.repeat):
            q = make()
            t = time.perf_counter()
            with engine.connect() as conn:
                rows = len(search_log(conn, q))
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        p95 = times[int(len(times) * 0.95) - 1]
        worst = max(worst, p95)
        print(f"{name:<32}{statistics.median(times):>9.1f}{p95:>9.1f}{rows:>7}")
    print(f"\nslowest p95: {worst:.1f} ms on {args.records:,} records")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
