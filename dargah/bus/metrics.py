"""Prometheus metrics of the bus: calls, latency and bytes per client, service and outcome.

Plain dictionaries updated on the request path (no locks: one event loop per
process) and rendered in the Prometheus text format on demand.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(slots=True)
class _Series:
    count: int = 0
    seconds: float = 0.0
    request_bytes: int = 0
    response_bytes: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))


def _label(value: str | None) -> str:
    return (value or "").replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class BusMetrics:
    def __init__(self) -> None:
        self._series: dict[tuple[str | None, str | None, str], _Series] = {}
        self.tokens_issued = 0
        self.tokens_refused = 0
        self.log_failures = 0

    def observe(
        self, client: str | None, service: str | None, outcome: str, seconds: float,
        request_bytes: int, response_bytes: int,
    ) -> None:
        key = (client, service, outcome)
        s = self._series.get(key)
        if s is None:
            s = self._series[key] = _Series()
        s.count += 1
        s.seconds += seconds
        s.request_bytes += request_bytes
        s.response_bytes += response_bytes
        s.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1

    def render(self, extra: dict[str, float] | None = None) -> str:
        out = [
            "# HELP gsb_calls_total Bus calls by client, service and outcome.",
            "# TYPE gsb_calls_total counter",
        ]
        items = sorted(self._series.items(), key=lambda kv: tuple(x or "" for x in kv[0]))
        for (client, service, outcome), s in items:
            out.append(
                f'gsb_calls_total{{client="{_label(client)}",service="{_label(service)}",'
                f'outcome="{_label(outcome)}"}} {s.count}'
            )
        out += ["# HELP gsb_request_bytes_total Request body bytes.", "# TYPE gsb_request_bytes_total counter"]
        for (client, service, outcome), s in items:
            out.append(
                f'gsb_request_bytes_total{{client="{_label(client)}",service="{_label(service)}",'
                f'outcome="{_label(outcome)}"}} {s.request_bytes}'
            )
        out += ["# HELP gsb_response_bytes_total Response body bytes.", "# TYPE gsb_response_bytes_total counter"]
        for (client, service, outcome), s in items:
            out.append(
                f'gsb_response_bytes_total{{client="{_label(client)}",service="{_label(service)}",'
                f'outcome="{_label(outcome)}"}} {s.response_bytes}'
            )
        out += [
            "# HELP gsb_call_duration_seconds Time from request to response, log commit included.",
            "# TYPE gsb_call_duration_seconds histogram",
        ]
        for (client, service, outcome), s in items:
            labels = f'client="{_label(client)}",service="{_label(service)}",outcome="{_label(outcome)}"'
            running = 0
            for bound, n in zip((*BUCKETS, float("inf")), s.buckets, strict=True):
                running += n
                le = "+Inf" if bound == float("inf") else repr(bound)
                out.append(f'gsb_call_duration_seconds_bucket{{{labels},le="{le}"}} {running}')
            out.append(f"gsb_call_duration_seconds_sum{{{labels}}} {s.seconds}")
            out.append(f"gsb_call_duration_seconds_count{{{labels}}} {s.count}")
        out += [
            "# TYPE gsb_tokens_issued_total counter",
            f"gsb_tokens_issued_total {self.tokens_issued}",
            "# TYPE gsb_tokens_refused_total counter",
            f"gsb_tokens_refused_total {self.tokens_refused}",
        ]
        for name, value in (extra or {}).items():
            out += [f"# TYPE {name} gauge", f"{name} {value}"]
        return "\n".join(out) + "\n"
