"""Opening the instance's database: SQLite in WAL mode by default, PostgreSQL when configured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.pool import NullPool

from dargah.core.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(durability: str) -> Any:
    sync = "FULL" if durability == "power" else "NORMAL"

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # transactions are begun by _begin_immediate
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={sync}")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return on_connect


def _begin_immediate(conn: Any) -> None:
    # A deferred SQLite transaction that reads and then writes fails at once with
    # "database is locked" when another connection (the log writer) committed in
    # between; taking the write lock at BEGIN makes it wait its turn instead.
    # Long read-only work asks for READ_ONLY (a plain deferred BEGIN).
    mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
    conn.exec_driver_sql("BEGIN" if mode == READ_ONLY["sqlite_begin"] else "BEGIN IMMEDIATE")


# Execution options for a read-only SQLite transaction that must not hold the write lock.
READ_ONLY = {"sqlite_begin": "DEFERRED"}


def make_engine(settings: Settings) -> Engine:
    """An engine for the instance's database; creates the home directory for SQLite."""
    if settings.is_sqlite:
        settings.home.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            settings.db_url,
            poolclass=NullPool,
            connect_args={"check_same_thread": False, "timeout": 30},
        )
        event.listen(engine, "connect", _sqlite_pragmas(settings.log_durability))
        event.listen(engine, "begin", _begin_immediate)
        return engine
    return create_engine(settings.db_url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option(
        "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
    )
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    command.upgrade(alembic_config(engine), "head")


def is_initialised(engine: Engine) -> bool:
    return inspect(engine).has_table("instance_meta")
