"""Measuring tools of the cluster benchmark: wrk loads side by side, CPU per thread, lock
waits in PostgreSQL, the time of one PostgreSQL commit."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from _procs import BenchError
from _wrk import WrkResult


def parallel(loads: Sequence[Callable[[], WrkResult]]) -> list[WrkResult]:
    out: list[WrkResult | None] = [None] * len(loads)

    def run(i: int) -> None:
        out[i] = loads[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(loads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if any(r is None for r in out):
        raise BenchError("a wrk run failed")
    return [r for r in out if r is not None]


def checked(r: WrkResult, what: str) -> WrkResult:
    if not r.ok:
        raise BenchError(f"{what}: {r.non2xx} non-2xx answers, socket errors {r.socket_errors}")
    return r


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of process ``pid`` (the main thread's id is ``pid``)."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        f = stat[stat.rfind(")") + 2 :].split()
        out[int(task.name)] = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return out


class LockSampler:
    """How often a session of the nodes under test (application_name = the bench's schema)
    waits for a lock: the advisory lock of one shared chain, or any other (pg_stat_activity,
    sampled every 20 ms)."""

    def __init__(self, url: str, schema: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)
        self.schema = schema
        self.samples = self.waiting = self.advisory = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LockSampler:
        self.samples = self.waiting = self.advisory = 0
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        q = (
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE wait_event = 'advisory')"
            " FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name = %s"
        )
        while not self._stop.is_set():
            row = self.conn.execute(q, (self.schema,)).fetchone()
            self.samples += 1
            if row and row[0]:
                self.waiting += 1
            if row and row[1]:
                self.advisory += 1
            time.sleep(0.02)

    def summary(self) -> str:
        n = max(self.samples, 1)
        return f"{self.advisory / n:.0%} advisory, {self.waiting / n:.0%} any ({self.samples})"


def pg_commit_ms(url: str, n: int = 1500) -> tuple[float, float]:
    """p50 and p99 of one INSERT + COMMIT of a small row."""
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_commit (id serial PRIMARY KEY, v text)")
        conn.commit()
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            conn.execute("INSERT INTO bench_commit (v) VALUES (%s)", (f"row {i}",))
            conn.commit()
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99)]
