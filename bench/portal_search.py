"""Portal search on a large catalogue: the Kenya eCitizen catalogue (5,489 services).

Imports it into a temporary instance, builds the portal's search index, and runs
a bounded set of queries made from real titles (whole titles, single words,
words with a typo, pairs of words), printing the index build time and the
query latency percentiles. Goal: p95 under 20 ms.

    .venv/bin/python bench/portal_search.py [--queries 2000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "kenya-ecitizen"


def main() -> int:
    from dargah.core.settings import Settings
    from dargah.portal.catalogue import Catalogue
    from dargah.registry.catalogue.importer import import_catalogue
    from dargah.registry.instance import open_instance

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queries", type=int, default=2000)
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"the Kenya catalogue is not at {DATA}", file=sys.stderr)
        return 2
    home = Path(tempfile.mkdtemp(prefix="dargah-search-"))
    engine, info, _ = open_instance(Settings(home=home))
    import_catalogue(
        engine,
        [DATA / "agencies.csv", DATA / "services.csv"],
        mapping=ROOT / "docs" / "mappings" / "kenya-ecitizen.toml",
        actor="bench",
        instance=info.code,
    )
    t = time.perf_counter()
    with engine.connect() as conn:
        cat = Catalogue(conn)
    built = time.perf_counter() - t
    titles = [e.title for e in cat.index.entries]
    rng = random.Random(1403)
    queries = []
    for _ in range(args.queries):
        title = rng.choice(titles)
        words = title.split()
        kind = rng.randrange(4)
        if kind == 0:
            queries.append(title)
        elif kind == 1:
            queries.append(rng.choice(words))
        elif kind == 2:
            w = rng.choice(words)
            i = rng.randrange(len(w)) if w else 0
            queries.append(w[:i] + w[i + 1 :])  # a letter missing
        else:
            queries.append(" ".join(rng.sample(words, min(2, len(words)))))
    times = []
    for q in queries:
        t = time.perf_counter()
        cat.index.search(q)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    print(f"catalogue: {len(titles)} services; index built in {built:.2f} s")
    print(
        f"{len(queries)} queries: p50 {statistics.median(times):.2f} ms, "
        f"p95 {times[int(len(times) * 0.95)]:.2f} ms, p99 {times[int(len(times) * 0.99)]:.2f} ms, "
        f"max {times[-1]:.2f} ms (goal: p95 under 20 ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
