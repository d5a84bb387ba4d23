"""The message log's append path on SQLite, alone: CPU per record and WAL frames per commit.

A fresh instance (``process`` durability: WAL, synchronous=NORMAL) gets ``--prefill`` records,
then ``--batches`` batches of ``--batch`` records are committed through
:meth:`SqliteLog.nonblocking_append`, as the bus's event loop commits them, with a WAL
checkpoint every ``--checkpoint-every`` commits (about what the writer does every 0.5 s at a
few thousand calls a second). It prints the thread's user and system CPU per record (the
records themselves are made before the clock starts) and the WAL frames (pages) written per
commit. Run it under callgrind for instruction counts (subtract a run with ``--batches 0``).

    .venv/bin/python bench/log_append.py [--prefill 200000] [--batches 4000] [--batch 5]
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def record(i: int) -> dict[str, Any]:
    """A record like the proxy's for an allowed call (one in fifty a provider error)."""
    return {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{i % 1_000_000:06d}Z",
        "request_id": str(uuid.uuid4()),
        "client": "DEV/GOV/14003000014/tester",
        "service": "DEV/GOV/10100387143/sabt/person-inquiry.v1",
        "method": "GET",
        "path": "/persons/0499370899",
        "query_hash": None,
        "purpose": "identity-verification",
        "subject_ref": secrets.token_hex(32),
        "user": None,
        "request_hash": hashlib.sha256(b"%d" % i).hexdigest(),
        "response_hash": hashlib.sha256(b"-%d" % i).hexdigest(),
        "request_bytes": 0,
        "response_bytes": 212,
        "duration_us": 1200 + i % 300,
        "status": 200 if i % 50 else 502,
        "outcome": "ok" if i % 50 else "provider-error",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--prefill", type=int, default=200_000, help="records before timing")
    p.add_argument("--batches", type=int, default=4000, help="commits timed")
    p.add_argument("--batch", type=int, default=5, help="records per commit (default 5)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="commits per checkpoint")
    args = p.parse_args()

    from dargah.bus.log.backends import SqliteLog
    from dargah.core.settings import Settings
    from dargah.registry.instance import open_instance

    with tempfile.TemporaryDirectory(prefix="dargah-log-append-") as tmp:
        settings = Settings(home=Path(tmp) / "home")
        engine, _info, _token = open_instance(settings)
        engine.dispose()
        path = settings.db_url.removeprefix("sqlite:///")
        log = SqliteLog(path, "process")
        append = log.nonblocking_append()
        assert append is not None
        for start in range(0, args.prefill, 1000):
            n = min(1000, args.prefill - start)
            log.append([record(start + i) for i in range(n)], [None] * n)
        log.checkpoint()
        log._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        b = args.batch
        batches = [
            [record(args.prefill + k * b + i) for i in range(b)] for k in range(args.batches)
        ]
        nobody: list[Any] = [None] * b
        frames = 0
        r0, t0 = resource.getrusage(resource.RUSAGE_THREAD), time.perf_counter()
        for k, batch in enumerate(batches, start=1):
            assert append(batch, nobody)
            if k % args.checkpoint_every == 0:
                frames += log._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
        r1, t1 = resource.getrusage(resource.RUSAGE_THREAD), time.perf_counter()
        if args.batches % args.checkpoint_every:  # the frames since the last checkpoint
            frames += log._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
        log.close()
    records = max(1, args.batches * b)
    user = (r1.ru_utime - r0.ru_utime) / records * 1e6
    system = (r1.ru_stime - r0.ru_stime) / records * 1e6
    print(
        f"{args.batches} commits of {b} records after {args.prefill:,}:"
        f" {user + system:.1f} us CPU per record (user {user:.1f}, system {system:.1f}),"
        f" {(t1 - t0) / records * 1e6:.1f} us elapsed;"
        f" {frames / max(1, args.batches):.1f} WAL frames per commit"
    )


if __name__ == "__main__":
    main()
