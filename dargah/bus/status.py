"""How every bus service is doing right now: traffic of the last minutes and the health probes.

A service is **down** when its provider does not answer the health probe or at
least half of its recent calls failed on the provider's side; **degraded** when
more than 5 % failed or it misses its own latency objective in the window (the
percentile of its objective, e.g. p95, over its ``latency_ms``; see
:mod:`dargah.bus.slo`; the default objective when none is given); **up** otherwise (also
when it had no traffic and the probe answers). The rates and percentiles are those of the
window's newest :data:`SAMPLE` calls (``sampled``); ``calls`` counts the whole window.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from dargah.bus.health import Probe
from dargah.core.clock import rfc3339
from dargah.store.tables import members, message_log, services

# Outcomes that count against a provider (its own 5xx answers too, see below).
PROVIDER_FAILURES = frozenset(
    {"provider-unavailable", "provider-timeout", "circuit-open", "response-too-large"}
)
LATENCY_OBJECTIVE_MS = 1000.0
# Error rate and latency are measured on a service's newest calls of the window, at most this many.
SAMPLE = 10_000


def _percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return round(sorted_values[k], 2)


def service_status(
    conn: Connection,
    minutes: int,
    probes: dict[str, Probe] | None,
    now: datetime | None = None,
    latency: dict[str, tuple[float, float]] | None = None,
    default_latency: tuple[float, float] = (95.0, LATENCY_OBJECTIVE_MS),
) -> list[dict[str, Any]]:
    """One entry per active bus service, grouped by agency in the caller's hands.

    ``latency``: each service's latency objective as (percent of calls, milliseconds)."""
    since = rfc3339((now or datetime.now(UTC)) - timedelta(minutes=minutes))
    names = {r.id: r.name for r in conn.execute(select(members.c.id, members.c.name))}
    out = []
    for svc in conn.execute(
        select(services.c.id, services.c.subsystem_id, services.c.title, services.c.timeout_s)
        .where(services.c.status == "active")
        .order_by(services.c.id)
    ):
        in_window = (message_log.c.service == svc.id, message_log.c.ts >= since)
        # The newest calls of the window, at most SAMPLE of them (the index on (service, ts)
        # serves it backwards): what a check costs stays bounded whatever the traffic.
        rows = conn.execute(
            select(message_log.c.outcome, message_log.c.status, message_log.c.duration_us)
            .where(*in_window)
            .order_by(message_log.c.ts.desc())
            .limit(SAMPLE)
        ).all()
        calls = len(rows)
        if calls == SAMPLE:  # busier than the sample: count the window in the index alone
            calls = int(
                conn.execute(
                    select(func.count()).select_from(message_log).where(*in_window)
                ).scalar_one()
            )
        forwarded = [
            r
            for r in rows
            if r.outcome in ("ok", "provider-error") or r.outcome in PROVIDER_FAILURES
        ]
        failed = [
            r
            for r in forwarded
            if r.outcome in PROVIDER_FAILURES or (r.outcome == "provider-error" and r.status >= 500)
        ]
        latencies = sorted(r.duration_us / 1000 for r in forwarded)
        error_rate = round(len(failed) / len(forwarded), 4) if forwarded else 0.0
        p95 = _percentile(latencies, 95)
        percent, limit_ms = (latency or {}).get(svc.id, default_latency)
        at_objective = _percentile(latencies, percent)
        probe = (probes or {}).get(svc.subsystem_id)
        if (probe is not None and not probe.ok) or (forwarded and error_rate >= 0.5):
            state = "down"
        elif error_rate > 0.05 or (at_objective is not None and at_objective > limit_ms):
            state = "degraded"
        else:
            state = "up"
        member = svc.subsystem_id.rsplit("/", 1)[0]
        out.append(
            {
                "service": svc.id,
                "title": svc.title,
                "agency": member,
                "agency_name": names.get(member),
                "state": state,
                "calls": calls,
                "sampled": len(rows),
                "forwarded": len(forwarded),
                "failed": len(failed),
                "error_rate": error_rate,
                "latency_ms": {
                    "p50": _percentile(latencies, 50),
                    "p95": p95,
                    "p99": _percentile(latencies, 99),
                },
                "probe": None
                if probe is None
                else {
                    "ok": probe.ok,
                    "endpoint": probe.endpoint,
                    "latency_ms": probe.latency_ms,
                    "error": probe.error,
                    "checked_at": rfc3339(datetime.fromtimestamp(probe.checked_at, UTC)),
                },
            }
        )
    return out
