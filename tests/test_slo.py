"""Error budgets and burn rates computed right on synthetic histories, and the rules that say
whether a failure persists (pure functions, exact numbers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from dargah.bus import slo
from dargah.bus.causes import History
from dargah.bus.slo import Counts, Objective
from dargah.core.clock import rfc3339
from dargah.core.settings import Settings
from dargah.registry.instance import open_instance
from dargah.store.tables import message_log

OBJ = Objective(availability=99.5, latency_ms=1000, latency_percent=95)
NOW = 1_800_000_000.0  # a bucket boundary: 1_800_000_000 / 300 is whole


def test_burn_rate_is_the_bad_share_over_the_allowed_share() -> None:
    assert slo.burn_rate(0, 0, 99.5) == 0.0
    assert slo.burn_rate(5, 1000, 99.5) == 1.0  # 0.5 % bad against a 0.5 % budget
    assert slo.burn_rate(72, 1000, 99.5) == 14.4
    assert slo.burn_rate(1, 10, 99.0) == 10.0
    assert slo.burn_rate(0, 10, 100.0) == 0.0


def test_budget_left_is_the_share_of_the_month_s_budget_not_spent() -> None:
    assert slo.budget_left(0, 0, 99.5) == 1.0
    assert slo.budget_left(0, 10_000, 99.5) == 1.0
    assert slo.budget_left(25, 10_000, 99.5) == 0.5  # 25 of 50 allowed
    assert slo.budget_left(50, 10_000, 99.5) == 0.0
    assert slo.budget_left(100, 10_000, 99.5) == -1.0  # overspent twice over


def test_a_synthetic_month_gives_exact_budget_burn_and_achievement() -> None:
    buckets: dict[int, Counts] = {}
    # 29 days ago: a bad hour, 12 buckets of 100 calls with 20 failures each (240 bad).
    start = slo.bucket_of(NOW - 29 * 86400)
    for i in range(12):
        buckets[start + i * 300] = Counts(100, 20, 0)
    # Every other hour of the month: 100 good calls; the last hour: 10 bad of 100 per bucket.
    for i in range(1, 24 * 30):
        b = slo.bucket_of(NOW - i * 3600)
        buckets.setdefault(b, Counts(100, 0, 7))
    for i in range(12):
        buckets[slo.bucket_of(NOW - i * 300)] = Counts(100, 10, 0)
    r = slo.report(buckets, OBJ, NOW)
    month = slo.window(buckets, NOW, 30 * 86400)
    assert r["calls_30d"] == month.calls
    bad = month.failed
    assert bad == 240 + 120
    assert r["availability"]["bad_30d"] == 360
    allowed = 0.005 * month.calls
    assert r["availability"]["budget_left"] == round(1 - 360 / allowed, 4)
    # last hour (the 13 buckets from an hour before now): 12 x (100, 10) and one more 100 good
    long = slo.window(buckets, NOW, 3600)
    assert (long.calls, long.failed) == (1300, 120)
    assert r["availability"]["burn_rate"]["1h"] == round((120 / 1300) / 0.005, 4)
    assert r["availability"]["burn_rate"]["5m"] == 20.0  # two buckets of 10 % bad
    assert r["availability"]["burning"] is True  # 18.46 and 20 both over 14.4
    assert r["availability"]["achieved"] == round(100 * (1 - 360 / month.calls), 4)


def test_a_short_spike_alone_does_not_burn_and_a_quiet_service_never_burns() -> None:
    # the short window is the bucket holding now and the one before it
    spike = {slo.bucket_of(NOW): Counts(100, 100, 0), slo.bucket_of(NOW - 300): Counts(100, 100, 0)}
    for i in range(2, 12):
        spike[slo.bucket_of(NOW - i * 300)] = Counts(10_000, 0, 0)
    r = slo.report(spike, OBJ, NOW)
    assert r["availability"]["burn_rate"]["5m"] == 200.0
    assert r["availability"]["burn_rate"]["1h"] == round((200 / 100_200) / 0.005, 4)
    assert not r["availability"]["burning"]
    quiet = {slo.bucket_of(NOW): Counts(3, 3, 0)}
    assert not slo.report(quiet, OBJ, NOW)["availability"]["burning"]


def test_the_latency_objective_counts_calls_slower_than_its_limit() -> None:
    records = [
        ("2027-01-15T08:00:01Z", "S/1", "ok", 200, 999_000),
        ("2027-01-15T08:00:02Z", "S/1", "ok", 200, 1_001_000),
        ("2027-01-15T08:00:03Z", "S/1", "provider-error", 503, 10_000),
        ("2027-01-15T08:00:04Z", "S/1", "provider-error", 404, 10_000),
        ("2027-01-15T08:00:05Z", "S/1", "access-denied", 403, 10),
        ("2027-01-15T08:06:00Z", "S/1", "provider-timeout", 504, 5_000_000),
    ]
    counts = slo.tally(records, {}, OBJ)
    first = slo.bucket_of(datetime(2027, 1, 15, 8, 0, tzinfo=UTC).timestamp())
    assert counts[("S/1", first)] == Counts(4, 1, 1)
    assert counts[("S/1", first + 300)] == Counts(1, 1, 1)
    strict = {"S/1": Objective(99.0, 500, 90, True)}
    assert slo.tally(records[:2], strict, OBJ)[("S/1", first)] == Counts(2, 0, 2)


def test_the_roll_up_counts_each_log_record_once(tmp_path: Path) -> None:
    engine = open_instance(Settings(home=tmp_path / "h", instance="TEST"))[0]
    now = datetime.now(UTC)
    rows = [
        {
            "seq": i + 1,
            "ts": rfc3339(now - timedelta(seconds=30 - i)),
            "request_id": f"r{i}",
            "client": "c",
            "service": "S/1",
            "status": 200 if i % 4 else 503,
            "outcome": "ok" if i % 4 else "provider-unavailable",
            "request_bytes": 0,
            "response_bytes": 0,
            "duration_us": 2000,
            "prev_hash": "0" * 64,
            "hash": "0" * 64,
        }
        for i in range(20)
    ]
    with engine.begin() as conn:
        conn.execute(insert(message_log), rows)
    for _ in range(3):  # again and again: nothing counted twice
        with engine.begin() as conn:
            slo.roll_up(conn, OBJ, batch=7)
    with engine.connect() as conn:
        sums = slo.month_sums(conn, now.timestamp())
        reports = slo.reports(conn, ["S/1"], OBJ, now.timestamp())
    assert sums["S/1"] == Counts(20, 5, 0)
    assert reports["S/1"]["availability"]["bad_30d"] == 5


def test_a_failure_persists_only_after_enough_failed_rounds_in_a_row() -> None:
    h = History()
    down = frozenset({"S/1", "S/2"})
    for t in (1, 2):
        h.add(t, down, reachable=False)
    assert not h.persists(3)
    h.add(3, down, reachable=False)
    assert h.persists(3) and h.failing_services() == down and h.started() == 1
    assert not h.persists(3, since=1.5)  # a streak that began before a resolution is not new


def test_a_flapping_cause_never_persists_and_recovery_must_be_sustained() -> None:
    h = History()
    for t in range(1, 30):  # down, down, up, down, down, up ...
        h.add(t, frozenset({"S/1"}) if t % 3 != 2 else frozenset(), reachable=t % 3 == 2)
        assert not h.persists(3)
        assert not h.sustained(3)
    for t in range(30, 33):
        h.add(t, frozenset(), reachable=True)
    assert h.sustained(3) and h.recovered() == 29 and h.seen_up  # 29 was good already


def test_the_roll_up_knows_when_it_is_behind_the_log(tmp_path: Path) -> None:
    engine = open_instance(Settings(home=tmp_path / "h", instance="TEST"))[0]
    with engine.connect() as conn:
        assert not slo.behind(conn)  # an empty log
    row = {
        "seq": 1,
        "ts": rfc3339(datetime.now(UTC)),
        "request_id": "r",
        "client": "c",
        "service": "S/1",
        "status": 200,
        "outcome": "ok",
        "request_bytes": 0,
        "response_bytes": 0,
        "duration_us": 10,
        "prev_hash": "0" * 64,
        "hash": "0" * 64,
    }
    with engine.begin() as conn:
        conn.execute(insert(message_log), [row])
        assert slo.behind(conn)
        assert slo.roll_up(conn, OBJ) == 1
        assert not slo.behind(conn)
