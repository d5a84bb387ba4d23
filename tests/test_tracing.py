"""With an OTLP endpoint configured, every bus call becomes a span in the caller's trace."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from tests.harness import make_world
from tests.providers import Provider


class _Collector(BaseHTTPRequestHandler):
    spans: ClassVar[list[dict[str, Any]]] = []
    paths: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        _Collector.paths.append(self.path)
        for rs in body["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                _Collector.spans.extend(ss["spans"])
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


def test_each_call_is_exported_as_a_span_of_the_callers_trace(
    tmp_path: Path, provider: Provider
) -> None:
    collector = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    w = make_world(tmp_path / "home", provider.url)
    sid = w.add_service("lookup.v1")
    w.grant("cons", sid)
    w.start(DARGAH_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.server_address[1]}")
    try:
        trace, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        r = w.call(
            sid,
            "/x",
            token=w.token(),
            purpose=None,
            subject=None,
            headers={"traceparent": f"00-{trace}-{parent}-01"},
        )
        assert r.status_code == 200
        sent_on = r.json()["headers"]["traceparent"]
        denied = w.call(sid, "/x", token=w.token("other"), purpose=None, subject=None)
        assert denied.status_code == 403
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(_Collector.spans) < 2:
            time.sleep(0.2)
    finally:
        w.stop()
        collector.shutdown()
    assert _Collector.paths and _Collector.paths[0] == "/v1/traces"
    ok = next(s for s in _Collector.spans if s["traceId"] == trace)
    assert ok["parentSpanId"] == parent and ok["spanId"] == sent_on.split("-")[2]
    attrs = {a["key"]: next(iter(a["value"].values())) for a in ok["attributes"]}
    assert attrs["gsb.outcome"] == "ok" and attrs["gsb.service"] == sid
    assert attrs["gsb.log_seq"] == r.headers["gsb-log-id"]
    assert int(ok["endTimeUnixNano"]) > int(ok["startTimeUnixNano"])
    refused = next(s for s in _Collector.spans if s["traceId"] != trace)
    assert refused["status"]["code"] == 2 and "parentSpanId" not in refused
