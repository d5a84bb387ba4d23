"""Fault and load: a mixed load over several providers while one of them fails.

Runs on 127.0.0.1 only, bounded in time. One bus (`dargah serve bus`), three
healthy providers and one that can be switched to failing (connection refused)
or hanging. It prints, from one run:

- the healthy services' throughput and p99 with no failure, then while the
  faulty provider refuses connections, then while it hangs;
- the faulty provider's answers (problem codes) and how long the breaker took
  to open after the fault began and to close after it ended;

    .venv/bin/python bench/fault_load.py [--seconds 5] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DARGAH = str(ROOT / ".venv" / "bin" / "dargah")
P, C = "DEV/GOV/10100387143", "DEV/GOV/14003000014"


class _Provider(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.server.mode == "reset":
            self.close_connection = True
            self.connection.close()
            return
        if self.server.mode == "hang":
            time.sleep(5)
        body = b'{"ok":true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    mode = "ok"  # ok | reset | hang


def serve(port: int = 0) -> _Server:
    s = _Server(("127.0.0.1", port), _Provider)
    threading.Thread(target=s.serve_forever, daemon=True).start()
    return s


def cli(home: Path, *args: str) -> str:
    return subprocess.run(
        [DARGAH, *args, "--home", str(home)], check=True, capture_output=True, text=True
    ).stdout


async def load(
    url: str, sids: list[str], token: str, seconds: float, conc: int, faulty: str
) -> dict[str, object]:
    lat: dict[str, list[float]] = collections.defaultdict(list)
    codes: collections.Counter[str] = collections.Counter()
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=conc * 2)) as http:

        async def worker(i: int) -> None:
            n = i
            while time.monotonic() < deadline:
                sid = sids[n % len(sids)]
                n += 1
                t = time.perf_counter()
                r = await http.get(
                    f"{url}/r1/{sid}/x", headers={"Authorization": f"Bearer {token}"}
                )
                if sid == faulty:
                    codes[r.headers.get("gsb-error", str(r.status_code))] += 1
                elif r.status_code == 200:
                    lat[sid].append((time.perf_counter() - t) * 1000)

        await asyncio.gather(*(worker(i) for i in range(conc)))
    healthy = [x for sid, xs in lat.items() for x in xs]
    healthy.sort()
    return {
        "healthy_rps": round(len(healthy) / seconds),
        "healthy_p50_ms": round(statistics.median(healthy), 2) if healthy else None,
        "healthy_p99_ms": round(healthy[int(len(healthy) * 0.99) - 1], 2) if healthy else None,
        "faulty": dict(codes),
    }


def breaker_times(url: str, sid: str, token: str, until: str, limit: float) -> float | None:
    """Seconds until a call to ``sid`` answers with ``until`` (a GSB-Error code, or 'ok')."""
    t0 = time.monotonic()
    with httpx.Client(timeout=10) as http:
        while time.monotonic() - t0 < limit:
            r = http.get(f"{url}/r1/{sid}/x", headers={"Authorization": f"Bearer {token}"})
            got = "ok" if r.status_code == 200 else r.headers.get("gsb-error", "")
            if got == until:
                return round(time.monotonic() - t0, 2)
            time.sleep(0.05)
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dargah-fault-"))
    home = tmp / "home"
    healthy = [serve() for _ in range(3)]
    faulty = serve()
    cli(home, "member", "add", "10100387143", "--name", "providers")
    cli(home, "member", "add", "14003000014", "--name", "consumer")
    secret = json.loads(cli(home, "subsystem", "add", f"{C}/load", "--secret"))["client_secret"]
    sids = []
    for i, srv in enumerate([*healthy, faulty]):
        sub = f"{P}/prov{i}"
        cli(home, "subsystem", "add", sub)
        sid = f"{sub}/lookup.v1"
        cli(
            home,
            "service",
            "add",
            sid,
            "--url",
            f"http://127.0.0.1:{srv.server_address[1]}/api",
            "--timeout",
            "1",
        )
        cli(home, "grant", "add", f"{C}/load", sid, "--purpose", "benchmark")
        sids.append(sid)
    port = healthy[0].server_address[1] + 1000
    bus = subprocess.Popen(
        [DARGAH, "serve", "bus", "--home", str(home), "--port", str(port)],
        env={**os.environ, "DARGAH_LOG_LEVEL": "warning"},
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        token = httpx.post(
            f"{url}/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": f"{C}/load",
                "client_secret": secret,
            },
        ).json()["access_token"]
        bad = sids[-1]
        results = {
            "no failure": asyncio.run(load(url, sids, token, args.seconds, args.concurrency, bad))
        }
        faulty.mode = "reset"
        opened = breaker_times(url, bad, token, "circuit-open", 30)
        results["provider drops connections"] = asyncio.run(
            load(url, sids, token, args.seconds, args.concurrency, bad)
        )
        faulty.mode = "ok"
        closed = breaker_times(url, bad, token, "ok", 30)
        faulty.mode = "hang"
        results["provider hangs"] = asyncio.run(
            load(url, sids, token, args.seconds, args.concurrency, bad)
        )
        faulty.mode = "ok"
        print(
            f"\nFault and load: {args.concurrency} concurrent callers over {len(sids)} services "
            f"(1 faulty), {args.seconds:g} s per phase, bus on 127.0.0.1, {os.cpu_count()} cores\n"
        )
        print(
            "| phase | healthy req/s | healthy p50 ms | healthy p99 ms | faulty provider's answers |"
        )
        print("|---|---|---|---|---|")
        for name, r in results.items():
            print(
                f"| {name} | {r['healthy_rps']} | {r['healthy_p50_ms']} | {r['healthy_p99_ms']} | "
                f"{r['faulty']} |"
            )
        print(
            f"\nbreaker opened {opened} s after the provider began dropping connections; "
            f"closed {closed} s after it came back (open interval 5 s, then one trial call)"
        )
    finally:
        os.killpg(bus.pid, signal.SIGTERM)
        bus.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
