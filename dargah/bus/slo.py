"""Objectives of bus services: error budgets and burn rates, from calls rolled up behind the log.

A service promises an **availability** (the share of forwarded calls that do not fail on the
provider's side, e.g. 99.5 %) and a **latency** (the share of forwarded calls answered within
``latency_ms``, e.g. 95 % within 1000 ms). Its error budget over :data:`BUDGET_DAYS` days is
``(1 - objective) × calls``; the **budget left** is the part of it not spent by bad calls
(negative once overspent); the **burn rate** over a window is the window's bad share divided
by ``1 - objective`` (1 spends the budget exactly in 30 days; 14.4 spends 2 % of it in an
hour). A service is **burning** when both the long (1 h) and the short (5 min) window burn
faster than :data:`FAST_BURN`: the multi-window alert of Google's SRE workbook.

The counts come from ``slo_buckets``: forwarded calls per service and 5-minute bucket,
rolled up from the message log by :func:`roll_up` (each monitor round, a bounded batch of
records past ``slo_cursor``), so that a report reads at most 8,640 small rows per service
instead of a month of the log (summed by the database, and kept a minute). The short
window is the bucket holding ``now`` and the one before it (5 to 10 minutes). A call counts
as slow against the latency objective in force when it was rolled up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.exc import IntegrityError

from dargah.core.settings import Settings
from dargah.store.tables import message_log, service_objectives, slo_buckets, slo_cursor

BUCKET_SECONDS = 300
BUDGET_DAYS = 30
LONG_WINDOW = 3600
SHORT_WINDOW = 300
FAST_BURN = 14.4
# Fewer forwarded calls than this in the short window never count as burning.
MIN_CALLS = 10
ROLL_UP_BATCH = 50_000
MONTH_CACHE_SECONDS = 60.0
# Outcomes that count against a provider (its own 5xx answers too).
PROVIDER_FAILURES = frozenset(
    {"provider-unavailable", "provider-timeout", "circuit-open", "response-too-large"}
)
FORWARDED = PROVIDER_FAILURES | {"ok", "provider-error"}


@dataclass(frozen=True, slots=True)
class Objective:
    availability: float  # percent
    latency_ms: float
    latency_percent: float  # percent of calls within latency_ms
    custom: bool = False  # set for this service (else the defaults)


def default_objective(settings: Settings) -> Objective:
    return Objective(
        settings.slo_availability, settings.slo_latency_ms, settings.slo_latency_percent
    )


@dataclass(frozen=True, slots=True)
class Counts:
    calls: int = 0
    failed: int = 0
    slow: int = 0


def burn_rate(bad: int, total: int, objective_percent: float) -> float:
    """How fast a window spends the budget: its bad share over the allowed share (0 if idle)."""
    allowed = 1 - objective_percent / 100
    if total <= 0:
        return 0.0
    if allowed <= 0:
        return float("inf") if bad else 0.0
    return round((bad / total) / allowed, 4)


def budget_left(bad: int, total: int, objective_percent: float) -> float:
    """The share of the period's error budget not spent (1.0 untouched, below 0 overspent)."""
    allowed = (1 - objective_percent / 100) * total
    if total <= 0:
        return 1.0
    if allowed <= 0:
        return 1.0 if bad == 0 else float("-inf")
    return round(1 - bad / allowed, 4)


def bucket_of(epoch: float) -> int:
    return int(epoch // BUCKET_SECONDS) * BUCKET_SECONDS


def window(buckets: Mapping[int, Counts], now: float, seconds: int) -> Counts:
    """The sum of the buckets that overlap the last ``seconds`` before ``now``."""
    first = bucket_of(now - seconds)
    calls = failed = slow = 0
    for start, c in buckets.items():
        if first <= start <= now:
            calls += c.calls
            failed += c.failed
            slow += c.slow
    return Counts(calls, failed, slow)


def report(
    buckets: Mapping[int, Counts], objective: Objective, now: float, month: Counts | None = None
) -> dict[str, Any]:
    """Budget and burn rates of one service for both objectives, from its buckets (``month``:
    the sum of its last 30 days, when the caller has it already)."""
    if month is None:
        month = window(buckets, now, BUDGET_DAYS * 86400)
    long = window(buckets, now, LONG_WINDOW)
    short = window(buckets, now, SHORT_WINDOW)
    out: dict[str, Any] = {
        "objective": {
            "availability": objective.availability,
            "latency_ms": objective.latency_ms,
            "latency_percent": objective.latency_percent,
            "custom": objective.custom,
        },
        "calls_30d": month.calls,
    }
    for name, target, field in (
        ("availability", objective.availability, "failed"),
        ("latency", objective.latency_percent, "slow"),
    ):
        bad_month, bad_long, bad_short = (int(getattr(c, field)) for c in (month, long, short))
        rates = {
            "1h": burn_rate(bad_long, long.calls, target),
            "5m": burn_rate(bad_short, short.calls, target),
        }
        out[name] = {
            "achieved": None if not month.calls else round(100 * (1 - bad_month / month.calls), 4),
            "bad_30d": bad_month,
            "budget_left": budget_left(bad_month, month.calls, target),
            "burn_rate": rates,
            "burning": short.calls >= MIN_CALLS
            and rates["1h"] >= FAST_BURN
            and rates["5m"] >= FAST_BURN,
        }
    return out


def is_failure(outcome: str, status: int) -> bool:
    return outcome in PROVIDER_FAILURES or (outcome == "provider-error" and status >= 500)


def objectives(conn: Connection, defaults: Objective) -> dict[str, Objective]:
    """The objectives set per service; a service not in it has ``defaults``."""
    return {
        r.service_id: Objective(r.availability, r.latency_ms, r.latency_percent, True)
        for r in conn.execute(select(service_objectives))
    }


def behind(conn: Connection) -> bool:
    """Whether the log has records the roll-up has not counted (two lookups by key)."""
    newest = conn.execute(select(func.max(message_log.c.seq))).scalar()
    done = conn.execute(select(slo_cursor.c.seq).where(slo_cursor.c.name == "log")).scalar()
    return newest is not None and (done is None or int(done) < int(newest))


def roll_up(conn: Connection, defaults: Objective, batch: int = ROLL_UP_BATCH) -> int:
    """Count the next log records into ``slo_buckets``; returns how many were read.

    Safe with any number of processes: the cursor moves by compare-and-set in the same
    transaction as the counts, so a batch another process counted first is not counted again
    (the loser's transaction is rolled back by the caller on the returned -1).
    """
    # FOR UPDATE (PostgreSQL): a second process waits here and then reads the moved cursor,
    # instead of counting the same batch and losing the compare-and-set (SQLite's BEGIN
    # IMMEDIATE serialises already).
    row = conn.execute(
        select(slo_cursor.c.seq).where(slo_cursor.c.name == "log").with_for_update()
    ).first()
    if row is None:
        try:
            with conn.begin_nested():
                conn.execute(slo_cursor.insert().values(name="log", seq=0))
        except IntegrityError:
            return -1
        start = 0
    else:
        start = int(row.seq)
    rows = conn.execute(
        select(
            message_log.c.seq,
            message_log.c.ts,
            message_log.c.service,
            message_log.c.outcome,
            message_log.c.status,
            message_log.c.duration_us,
        )
        .where(message_log.c.seq > start)
        .order_by(message_log.c.seq)
        .limit(batch)
    ).all()
    if not rows:
        return 0
    objs = objectives(conn, defaults)
    counts = tally(
        ((r.ts, r.service, r.outcome, r.status, r.duration_us) for r in rows), objs, defaults
    )
    moved = conn.execute(
        update(slo_cursor)
        .where(slo_cursor.c.name == "log", slo_cursor.c.seq == start)
        .values(seq=int(rows[-1].seq))
    ).rowcount
    if moved != 1:
        return -1
    for (sid, bucket), c in counts.items():
        done = conn.execute(
            update(slo_buckets)
            .where(slo_buckets.c.service_id == sid, slo_buckets.c.bucket == bucket)
            .values(
                calls=slo_buckets.c.calls + c.calls,
                failed=slo_buckets.c.failed + c.failed,
                slow=slo_buckets.c.slow + c.slow,
            )
        ).rowcount
        if not done:
            conn.execute(
                slo_buckets.insert().values(
                    service_id=sid, bucket=bucket, calls=c.calls, failed=c.failed, slow=c.slow
                )
            )
    return len(rows)


def tally(
    records: Iterable[tuple[str, str | None, str, int, int]],
    objs: Mapping[str, Objective],
    defaults: Objective,
) -> dict[tuple[str, int], Counts]:
    """(ts, service, outcome, status, duration_us) records → counts per service and bucket."""
    out: dict[tuple[str, int], list[int]] = {}
    for ts, service, outcome, status, duration_us in records:
        if not service or outcome not in FORWARDED:
            continue
        at = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
        key = (service, bucket_of(at))
        c = out.setdefault(key, [0, 0, 0])
        c[0] += 1
        c[1] += is_failure(outcome, status)
        c[2] += duration_us / 1000 > objs.get(service, defaults).latency_ms
    return {k: Counts(*v) for k, v in out.items()}


def month_sums(conn: Connection, now: float) -> dict[str, Counts]:
    """Every service's counts over the last 30 days (summed by the database)."""
    q = (
        select(
            slo_buckets.c.service_id,
            func.sum(slo_buckets.c.calls),
            func.sum(slo_buckets.c.failed),
            func.sum(slo_buckets.c.slow),
        )
        .where(slo_buckets.c.bucket >= bucket_of(now - BUDGET_DAYS * 86400))
        .group_by(slo_buckets.c.service_id)
    )
    return {sid: Counts(int(a or 0), int(b or 0), int(c or 0)) for sid, a, b, c in conn.execute(q)}


_months: dict[int, tuple[float, dict[str, Counts]]] = {}
_months_lock = threading.Lock()


def _cached_month_sums(conn: Connection, now: float) -> dict[str, Counts]:
    """:func:`month_sums`, measured at most every :data:`MONTH_CACHE_SECONDS` per database:
    the console's status page asks every 10 s, and a month barely moves in a minute."""
    key = id(conn.engine)
    with _months_lock:
        hit = _months.get(key)
    if hit is not None and time.monotonic() - hit[0] < MONTH_CACHE_SECONDS:
        return hit[1]
    sums = month_sums(conn, now)
    with _months_lock:
        if len(_months) > 32:
            _months.clear()
        _months[key] = (time.monotonic(), sums)
    return sums


def buckets_since(conn: Connection, since: float) -> dict[str, dict[int, Counts]]:
    """Every service's buckets from ``since`` (epoch seconds) on."""
    out: dict[str, dict[int, Counts]] = {}
    for r in conn.execute(select(slo_buckets).where(slo_buckets.c.bucket >= bucket_of(since))):
        out.setdefault(r.service_id, {})[int(r.bucket)] = Counts(
            int(r.calls), int(r.failed), int(r.slow)
        )
    return out


def reports(
    conn: Connection, service_ids: Iterable[str], defaults: Objective, now: float
) -> dict[str, dict[str, Any]]:
    """:func:`report` for each of ``service_ids``."""
    objs = objectives(conn, defaults)
    recent = buckets_since(conn, now - LONG_WINDOW)
    months = _cached_month_sums(conn, now)
    return {
        sid: report(recent.get(sid, {}), objs.get(sid, defaults), now, months.get(sid, Counts()))
        for sid in service_ids
    }
