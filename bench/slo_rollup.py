"""Objectives at scale: what the roll-up behind the message log and a 30-day report cost.

Builds, in a fresh embedded instance (SQLite), 100 services with 30 days of 5-minute buckets
(864,000 rows) and 200,000 message-log records, then prints how long the 30-day sums, the
last hour's buckets and rolling the records up take. Noisy on a shared machine: compare the
figures of one run with each other.

    .venv/bin/python bench/slo_rollup.py [--services 100] [--records 200000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from dargah.bus import slo
from dargah.core.clock import rfc3339
from dargah.core.settings import Settings
from dargah.registry.instance import open_instance
from dargah.store.tables import message_log, slo_buckets

OBJ = slo.Objective(99.5, 1000, 95)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=100)
    ap.add_argument("--records", type=int, default=200_000)
    args = ap.parse_args()
    engine = open_instance(Settings(home=Path(tempfile.mkdtemp()), instance="TEST"))[0]
    now = time.time()
    rows = [
        {
            "service_id": f"S/{s}",
            "bucket": slo.bucket_of(now) - b * 300,
            "calls": 100,
            "failed": 1,
            "slow": 2,
        }
        for s in range(args.services)
        for b in range(30 * 288)
    ]
    with engine.begin() as conn:
        for i in range(0, len(rows), 50_000):
            conn.execute(insert(slo_buckets), rows[i : i + 50_000])
    with engine.connect() as conn:
        t = time.perf_counter()
        slo.month_sums(conn, now)
        month = time.perf_counter() - t
        t = time.perf_counter()
        slo.buckets_since(conn, now - slo.LONG_WINDOW)
        hour = time.perf_counter() - t
    print(
        f"{args.services} services x 30 days ({len(rows):,} buckets): 30-day sums "
        f"{month * 1000:.0f} ms, last hour's buckets {hour * 1000:.1f} ms"
    )
    start = datetime.now(UTC) - timedelta(minutes=30)
    log = [
        {
            "seq": i + 1,
            "ts": rfc3339(start + timedelta(milliseconds=i * 5)),
            "request_id": f"r{i}",
            "client": "c",
            "service": f"S/{i % args.services}",
            "status": 200,
            "outcome": "ok",
            "request_bytes": 0,
            "response_bytes": 0,
            "duration_us": 2000,
            "prev_hash": "0" * 64,
            "hash": "0" * 64,
        }
        for i in range(args.records)
    ]
    with engine.begin() as conn:
        for i in range(0, len(log), 50_000):
            conn.execute(insert(message_log), log[i : i + 50_000])
    t = time.perf_counter()
    total = 0
    while True:
        with engine.begin() as conn:
            n = slo.roll_up(conn, OBJ)
        if n <= 0:
            break
        total += n
    took = time.perf_counter() - t
    print(f"roll-up of {total:,} log records: {took:.2f} s ({total / took:,.0f} records/s)")


if __name__ == "__main__":
    main()
