"""Portal pages under load: 20 signed-in citizens at once, each going through the pages a
citizen opens (home, search, a service page, the consent page, my applications, who used my
data), against ``dargah demo`` on loopback.

Each citizen spends ``--think`` seconds (±50 %) on a page before the next; ``--think 0`` is
a closed loop at full speed, which saturates the two cores this runs on (load, bus, sandbox
agencies and portal all share them). Prints, per page, the server time (the portal's
``Server-Timing`` header: until the response starts) and the time the client saw, as
p50/p95/p99. Goal: p95 server time under 50 ms.

    .venv/bin/python bench/portal_pages.py [--users 20] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAGES = {
    "home": "/",
    "search": "/search?q=گواهینامه رانندگی",
    "service": "/services/21100000001",
    "consent": "/services/21100000001/apply",
    "my-applications": "/me/applications",
    "data-use": "/me/data-use",
}


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


def main() -> int:
    import httpx

    from tests.harness import free_port
    from tests.portal_client import Citizen

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument(
        "--think",
        type=float,
        default=1.0,
        help="seconds each citizen spends on a page before the next (0: as fast as possible)",
    )
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="dargah-portal-bench-")) / "home"
    port = free_port()
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "dargah"), "demo", "--home", str(home), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "DARGAH_LOG_LEVEL": "warning"},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if (
                    httpx.get(base + "/readyz", timeout=1).status_code == 200
                    and (home / "demo.json").exists()
                ):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            print("the demo did not start in 60 s", file=sys.stderr)
            return 2
        doc = json.loads((home / "demo.json").read_text(encoding="utf-8"))
        citizens = [
            Citizen(base, c["national_code"], c["mobile"]).sign_in()
            for c in doc["citizens"][: args.users]
        ]
        print(f"{len(citizens)} citizens signed in; {args.seconds:.0f} s of load", file=sys.stderr)
        server: dict[str, list[float]] = {k: [] for k in PAGES}
        client: dict[str, list[float]] = {k: [] for k in PAGES}
        errors: list[str] = []
        lock = threading.Lock()
        stop_at = time.monotonic() + args.seconds

        def user(c: Citizen) -> None:
            while time.monotonic() < stop_at:
                for name, path in PAGES.items():
                    t0 = time.perf_counter()
                    r = c.get(path)
                    seen = (time.perf_counter() - t0) * 1000
                    timing = re.search(r"dur=([0-9.]+)", r.headers.get("server-timing", ""))
                    with lock:
                        if r.status_code != 200 or timing is None:
                            errors.append(f"{name}: {r.status_code}")
                            continue
                        server[name].append(float(timing.group(1)))
                        client[name].append(seen)
                    if args.think:
                        time.sleep(args.think * random.uniform(0.5, 1.5))

        threads = [threading.Thread(target=user, args=(c,)) for c in citizens]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = sum(len(v) for v in server.values())
        print(
            f"\n{args.users} concurrent citizens (think time {args.think:g} s), "
            f"{total} pages in {args.seconds:.0f} s "
            f"({total / args.seconds:.0f} pages/s), {len(errors)} errors"
        )
        print(
            f"{'page':<18}{'n':>6}  {'server p50':>10} {'p95':>7} {'p99':>7}   {'client p50':>10} {'p95':>7}"
        )
        everything: list[float] = []
        for name in PAGES:
            s, c = server[name], client[name]
            everything += s
            print(
                f"{name:<18}{len(s):>6}  {statistics.median(s):>9.1f}  {_pct(s, 0.95):>6.1f} "
                f"{_pct(s, 0.99):>6.1f}   {statistics.median(c):>9.1f}  {_pct(c, 0.95):>6.1f}  ms"
            )
        p95 = _pct(everything, 0.95)
        print(
            f"\nall pages: server p95 {p95:.1f} ms (goal < 50 ms): {'met' if p95 < 50 else 'NOT met'}"
        )
        return 0 if not errors else 1
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


if __name__ == "__main__":
    raise SystemExit(main())
