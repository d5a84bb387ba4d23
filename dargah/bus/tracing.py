"""Traces to OpenTelemetry: one span per bus call, exported by OTLP/HTTP (JSON) when configured.

Nothing is exported unless ``DARGAH_OTLP_ENDPOINT`` is set. The span is built
from what the bus already has (the call's record, the W3C trace context it
propagated, its start and end) and exported by a background thread in
batches, so the per-request cost is appending one tuple to a list.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from typing import Any

import httpx

log = logging.getLogger("dargah.tracing")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
BATCH = 512


class SpanExporter:
    def __init__(self, endpoint: str, service_name: str = "dargah-bus") -> None:
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError("DARGAH_OTLP_ENDPOINT must be an http(s) URL")
        base = endpoint.rstrip("/")
        self.url = base if base.endswith("/v1/traces") else base + "/v1/traces"
        self.service_name = service_name
        self._pending: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self.exported = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="dargah-otlp", daemon=True)
        self._thread.start()

    def record(
        self,
        rec: dict[str, Any],
        traceparent: str,
        incoming: str | None,
        start_ns: int,
        end_ns: int,
    ) -> None:
        with self._lock:
            self._pending.append((rec, traceparent, incoming, start_ns, end_ns))
            if len(self._pending) >= BATCH:
                self._wake.set()

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            self._wake.wait(1.0)
            self._wake.clear()
            with self._lock:
                batch, self._pending = self._pending, []
            if batch:
                self._export(batch)
            if self._stop:
                return

    def _export(self, batch: list[tuple[Any, ...]]) -> None:
        body = json.dumps(
            {
                "resourceSpans": [
                    {
                        "resource": {"attributes": [_attr("service.name", self.service_name)]},
                        "scopeSpans": [
                            {
                                "scope": {"name": "dargah.bus"},
                                "spans": [s for s in (_span(*item) for item in batch) if s],
                            }
                        ],
                    }
                ]
            }
        ).encode()
        try:
            resp = httpx.post(
                self.url, content=body, timeout=5, headers={"Content-Type": "application/json"}
            )
            resp.raise_for_status()
            self.exported += len(batch)
        except httpx.HTTPError as exc:
            self.failed += len(batch)
            log.warning("could not export %d spans to %s: %s", len(batch), self.url, exc)


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": str(value)}}


def _span(
    rec: dict[str, Any], traceparent: str, incoming: str | None, start_ns: int, end_ns: int
) -> dict[str, Any] | None:
    m = _TRACEPARENT.fullmatch(traceparent)
    if m is None:
        return None
    span: dict[str, Any] = {
        "traceId": m.group(1),
        "spanId": m.group(2),
        "name": f"{rec.get('method')} {rec.get('service') or '(unparsed)'}",
        "kind": 2,  # server
        "startTimeUnixNano": str(start_ns),
        "endTimeUnixNano": str(end_ns),
        "attributes": [
            _attr(k, v)
            for k, v in (
                ("gsb.request_id", rec.get("request_id")),
                ("gsb.client", rec.get("client")),
                ("gsb.service", rec.get("service")),
                ("gsb.outcome", rec.get("outcome")),
                ("gsb.log_seq", rec.get("seq")),
                ("gsb.purpose", rec.get("purpose")),
                ("http.request.method", rec.get("method")),
                ("http.response.status_code", rec.get("status")),
            )
            if v is not None
        ],
        "status": {"code": 1 if rec.get("outcome") == "ok" else 2},
    }
    parent = _TRACEPARENT.fullmatch(incoming.strip()) if incoming else None
    if parent is not None and parent.group(1) == m.group(1):
        span["parentSpanId"] = parent.group(2)
    return span


def now_ns() -> int:
    return time.time_ns()
