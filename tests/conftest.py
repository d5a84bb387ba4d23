"""Fixtures: storage backends (SQLite always, PostgreSQL when reachable, required in CI) and a running bus."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import browser, page, shots  # noqa: F401  (fixtures)
from tests.harness import World, make_world
from tests.providers import Provider

PG_URL = os.environ.get("DARGAH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_reachable() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as exc:
        return str(exc)


_PG_ERROR = _pg_reachable()


@contextlib.contextmanager
def _pg_schema() -> Iterator[str]:
    """A URL to a fresh PostgreSQL schema, dropped afterwards."""
    if _PG_ERROR is not None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL must be reachable in CI at {PG_URL}: {_PG_ERROR}")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {_PG_ERROR}")
    import psycopg

    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """'' for SQLite in the instance home, or a URL to a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield ""
        return
    with _pg_schema() as url:
        yield url


@pytest.fixture
def pg_database_url() -> Iterator[str]:
    """A fresh PostgreSQL schema, for what only a server database can show."""
    with _pg_schema() as url:
        yield url


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def module_database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Like ``database_url``, for a module's shared server: '' or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield ""
        return
    with _pg_schema() as url:
        yield url


@pytest.fixture(scope="session")
def provider() -> Iterator[Provider]:
    with Provider() as p:
        yield p


@pytest.fixture
def world(tmp_path: Path, provider: Provider) -> Iterator[World]:
    """A fresh instance on SQLite with a running bus."""
    w = make_world(tmp_path / "home", provider.url)
    try:
        yield w
    finally:
        w.stop()


@pytest.fixture
def world_db(tmp_path: Path, provider: Provider, database_url: str) -> Iterator[World]:
    """A fresh instance on each storage backend."""
    w = make_world(tmp_path / "home", provider.url, database_url)
    try:
        yield w
    finally:
        w.stop()
        w.engine.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def sandbox_demo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """One ``dargah demo`` per backend for the portal's tests (applications decided after 3 s,
    the portal's watcher asking for news every 5 s).

    Shared by several modules: each picks its own citizens (see ``demo.json``'s list)."""
    from tests.demo_process import Demo
    from tests.harness import free_port

    with contextlib.ExitStack() as stack:
        env = {"DARGAH_SANDBOX_DECIDE_SECONDS": "3", "DARGAH_PORTAL_WATCH_SECONDS": "5"}
        if request.param == "postgres":
            env["DARGAH_DATABASE_URL"] = stack.enter_context(_pg_schema())
        d = Demo(tmp_path_factory.mktemp("portal-demo") / "home", free_port(), env=env)
        d.doc = d.start()
        try:
            yield d
        finally:
            if d.proc is not None:
                d.stop()
