"""Time to score all pairs of the Kenya eCitizen catalogue (5,489 services) for duplicates.

Imports the catalogue into a temporary SQLite instance, then prints the time of
``score_pairs`` (every pair considered; those reaching 0.5 listed), the number of candidate
pairs scoring at least 0.5, and the top 10.

Usage::

    .venv/bin/python bench/catalogue_duplicates.py [--min-score S]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from dargah.core.settings import Settings
from dargah.registry.catalogue import import_catalogue
from dargah.registry.catalogue.duplicates import load_services, score_pairs
from dargah.registry.instance import open_instance

ROOT = Path(__file__).resolve().parents[1]
KENYA = ROOT.parent / "shared" / "data" / "kenya-ecitizen"
MAPPING = ROOT / "docs" / "mappings" / "kenya-ecitizen.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-score", type=float, default=0.5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        engine, _info, _token = open_instance(Settings(home=Path(home), instance="BENCH"))
        try:
            started = time.perf_counter()
            report = import_catalogue(
                engine,
                [KENYA / "agencies.csv", KENYA / "services.csv"],
                mapping=MAPPING,
                actor="bench",
                instance="BENCH",
            )
            print(
                f"import: {report.services_created} services in {time.perf_counter() - started:.2f} s"
            )
            with engine.connect() as conn:
                services = load_services(conn)
        finally:
            engine.dispose()
    titles = {s.service_id: s.title_en or s.title_fa or "" for s in services}
    started = time.perf_counter()
    pairs = score_pairs(services, floor=args.min_score)
    seconds = time.perf_counter() - started
    candidates = [p for p in pairs if p.score >= args.min_score]
    n = len(services)
    print(f"scored all {n * (n - 1) // 2:,} pairs of {n:,} active services in {seconds:.2f} s")
    print(f"candidate pairs scoring >= {args.min_score}: {len(candidates):,}")
    print(f"  of which same agency: {sum(p.same_agency for p in candidates):,}")
    print("top 10:")
    for p in candidates[:10]:
        flags = " same-agency" if p.same_agency else ""
        print(f"  {p.score:.3f} {p.a} {p.b}{flags}: {titles[p.a]!r} / {titles[p.b]!r}")


if __name__ == "__main__":
    main()
