"""Server time of the public dashboard's national page, on the demo catalogue and on Kenya's.

For each catalogue: a fresh instance, the catalogue imported, one snapshot taken; then the
national page ``/dashboard`` asked N times in process (Starlette's test client), measuring
the time inside the application: *cold* (the overview measured again for every request) and
*warm* (the shared overview, refreshed every 30 s, as served). Prints p50 and p95 in ms.

    .venv/bin/python bench/oversight_dashboard.py [--requests 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KENYA = ROOT.parent / "shared" / "data" / "kenya-ecitizen"


def _instance(kind: str) -> object:
    from dargah.core.settings import Settings
    from dargah.registry.catalogue.importer import import_catalogue
    from dargah.registry.instance import open_instance
    from dargah.sandbox.catalogue_seed import load_seed_catalogue

    home = Path(tempfile.mkdtemp(prefix=f"dargah-dash-{kind}-"))
    engine, info, _ = open_instance(Settings(home=home))
    if kind == "demo":
        seed = home / "seed.json"
        seed.write_text(json.dumps(load_seed_catalogue(), ensure_ascii=False), encoding="utf-8")
        files, mapping = [seed], None
    else:
        files = [KENYA / "agencies.csv", KENYA / "services.csv"]
        mapping = ROOT / "docs" / "mappings" / "kenya-ecitizen.toml"
    import_catalogue(engine, files, mapping=mapping, actor="bench", instance=info.code)
    return engine


def _times(client: object, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = client.get("/dashboard")  # type: ignore[attr-defined]
        out.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200
    return out


def main() -> int:
    from starlette.testclient import TestClient

    from dargah.core.clock import utc_now
    from dargah.oversight.snapshots import take_snapshot
    from dargah.oversight.web.app import build_dashboard

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=30)
    args = ap.parse_args()
    for kind in ("demo", "kenya"):
        if kind == "kenya" and not KENYA.is_dir():
            print(f"the Kenya catalogue is not at {KENYA}; skipped")
            continue
        engine = _instance(kind)
        t = time.perf_counter()
        take_snapshot(engine, utc_now())  # type: ignore[arg-type]
        snap = time.perf_counter() - t
        for mode, refresh in (("cold", 0.0), ("warm", 30.0)):
            with TestClient(build_dashboard(engine, refresh=refresh)) as client:  # type: ignore[arg-type]
                client.get("/dashboard")
                ms = sorted(_times(client, args.requests))
            p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
            print(
                f"{kind:<6} {mode:<5} p50 {statistics.median(ms):7.1f} ms  p95 {p95:7.1f} ms"
                f"  ({args.requests} requests; snapshot {snap:.1f} s)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
