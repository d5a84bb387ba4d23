"""Prometheus metrics of the bus: calls, latency and bytes per client, service and outcome.

Plain dictionaries updated on the request path (no locks: one event loop per
process) and rendered in the Prometheus text format on demand.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


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
        self,
        client: str | None,
        service: str | None,
        outcome: str,
        seconds: float,
        request_bytes: int,
        response_bytes: int,
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

    def state(self) -> dict[str, Any]:
        """Everything counted, as JSON-ready data (for sharing between worker processes)."""
        return {
            "series": [
                [c, s, o, v.count, v.seconds, v.request_bytes, v.response_bytes, v.buckets]
                for (c, s, o), v in self._series.items()
            ],
            "tokens_issued": self.tokens_issued,
            "tokens_refused": self.tokens_refused,
        }

    def add_state(self, state: dict[str, Any]) -> None:
        """Add another process's counts to these."""
        for c, s, o, count, seconds, req, resp, buckets in state.get("series", []):
            series = self._series.setdefault((c, s, o), _Series())
            series.count += count
            series.seconds += seconds
            series.request_bytes += req
            series.response_bytes += resp
            series.buckets = [a + b for a, b in zip(series.buckets, buckets, strict=True)]
        self.tokens_issued += state.get("tokens_issued", 0)
        self.tokens_refused += state.get("tokens_refused", 0)

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
        out += [
            "# HELP gsb_request_bytes_total Request body bytes.",
            "# TYPE gsb_request_bytes_total counter",
        ]
        for (client, service, outcome), s in items:
            out.append(
                f'gsb_request_bytes_total{{client="{_label(client)}",service="{_label(service)}",'
                f'outcome="{_label(outcome)}"}} {s.request_bytes}'
            )
        out += [
            "# HELP gsb_response_bytes_total Response body bytes.",
            "# TYPE gsb_response_bytes_total counter",
        ]
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
            labels = (
                f'client="{_label(client)}",service="{_label(service)}",outcome="{_label(outcome)}"'
            )
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


class SharedMetrics:
    """Worker processes on one machine share their counts through files in ``directory``.

    Each process writes its own state every few seconds; ``/metrics``, whichever
    process answers it, adds up its live counts and those of the other live processes.
    """

    def __init__(self, directory: Path, own: BusMetrics) -> None:
        self.directory = directory
        self.own = own
        self.pid = os.getpid()
        directory.mkdir(parents=True, exist_ok=True)

    def publish(self) -> None:
        path = self.directory / f"{self.pid}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.own.state()), encoding="utf-8")
        tmp.replace(path)

    def combined(self) -> BusMetrics:
        total = BusMetrics()
        total.add_state(self.own.state())
        for path in self.directory.glob("*.json"):
            try:
                pid = int(path.stem)
            except ValueError:
                continue
            if pid == self.pid:
                continue
            if not _alive(pid):
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            try:
                total.add_state(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue
        return total

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            (self.directory / f"{self.pid}.json").unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
