"""Time to import the Kenya eCitizen catalogue (5,489 services, 286 agencies) into a fresh instance.

For each backend (SQLite in a temporary home; PostgreSQL in a temporary schema when one is
reachable at $DARGAH_TEST_PG_URL, default postgresql://postgres@127.0.0.1:5432/test) it
prints the time of a first import (everything created), of a dry run and of a second import
of the same files (everything unchanged), and of a JSON export.

Usage::

    .venv/bin/python bench/catalogue_import.py [--rounds N]
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dargah.core.settings import Settings
from dargah.registry.catalogue import export_catalogue, import_catalogue
from dargah.registry.instance import open_instance

ROOT = Path(__file__).resolve().parents[1]
KENYA = ROOT.parent / "shared" / "data" / "kenya-ecitizen"
MAPPING = ROOT / "docs" / "mappings" / "kenya-ecitizen.toml"
PG_URL = os.environ.get("DARGAH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def sqlite_url() -> Iterator[tuple[Path, str]]:
    with tempfile.TemporaryDirectory() as home:
        yield Path(home), ""


@contextmanager
def postgres_url() -> Iterator[tuple[Path, str]]:
    import psycopg

    schema = f"bench_{secrets.token_hex(6)}"
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        with tempfile.TemporaryDirectory() as home:
            sep = "&" if "?" in PG_URL else "?"
            yield Path(home), f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def one_round(home: Path, url: str) -> str:
    files = [KENYA / "agencies.csv", KENYA / "services.csv"]
    engine, info, _ = open_instance(Settings(home=home, database_url=url, instance="DEV"))
    try:

        def run(**kw: Any) -> Any:
            return import_catalogue(
                engine, files, mapping=MAPPING, actor="bench", instance=info.code, **kw
            )

        first_s, first = timed(run)
        if first.errors or first.services_created != 5489:
            sys.exit(f"the import failed: {first.errors[:5]}")
        dry_s, _ = timed(lambda: run(dry_run=True))
        again_s, again = timed(run)
        export_s, _ = timed(lambda: export_catalogue(engine, "json", io.StringIO()))
    finally:
        engine.dispose()
    return (
        f"first import {first_s:6.2f} s ({first.services_created} services, "
        f"{first.agencies_created} agencies), dry run {dry_s:5.2f} s, re-import "
        f"{again_s:5.2f} s ({again.services_unchanged} unchanged), "
        f"JSON export {export_s:5.2f} s"
    )


def bench(name: str, backend: Callable[[], Any], rounds: int) -> None:
    for i in range(rounds):
        with backend() as (home, url):
            print(f"{name:<10} round {i + 1}: {one_round(home, url)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    if not KENYA.is_dir():
        sys.exit(f"the Kenya eCitizen data is not at {KENYA}")
    bench("sqlite", sqlite_url, args.rounds)
    try:
        import psycopg

        psycopg.connect(PG_URL, connect_timeout=3).close()
    except Exception as exc:
        print(f"postgres   skipped: not reachable at {PG_URL} ({exc})")
        return
    bench("postgres", postgres_url, args.rounds)


if __name__ == "__main__":
    main()
