"""Message logs made by the real group-commit writer, for the log tests.

An instance is created with ``open_instance``; records are appended by a real
:class:`LogWriter` on its own thread, as the bus does, with the instance's seal key.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import Engine, text

from dargah.bus.log.backends import open_backend
from dargah.bus.log.writer import LogWriter
from dargah.core.clock import now_rfc3339
from dargah.core.keys import EdDSASigner, load_private_pem
from dargah.core.settings import Settings
from dargah.registry.instance import active_keys, open_instance

CLIENT = "DEV/GOV/14003000014/portal"
SERVICES = ("DEV/GOV/10100387143/sabt/person", "DEV/GOV/10100387143/sabt/address")


@dataclass
class LogDB:
    """An instance's database, with the settings that reach it."""

    settings: Settings
    engine: Engine

    @property
    def is_sqlite(self) -> bool:
        return self.settings.is_sqlite

    def sql(self, statement: str, **params: Any) -> None:
        """Run one statement and commit: how the tests tamper with the log."""
        with self.engine.begin() as conn:
            conn.execute(text(statement), params)

    def scalar(self, statement: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(statement), params).scalar()

    def rows(self, statement: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(statement), params))

    def writer(
        self,
        *,
        seal_every_records: int = 50,
        seal_every_seconds: float = 3600.0,
        db_url: str | None = None,
        durability: str | None = None,
        chain: str = "",
    ) -> LogWriter:
        """A writer like the bus's (runtime.py), with its own connection, of ``chain``."""
        with self.engine.connect() as conn:
            seal = active_keys(conn)["seal"]
        key = load_private_pem(seal.private.encode())
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        url = db_url or self.settings.db_url
        mode = durability or self.settings.log_durability
        return LogWriter(
            lambda: open_backend(url, mode, chain),
            EdDSASigner(key, seal.kid),
            seal_every_records=seal_every_records,
            seal_every_seconds=seal_every_seconds,
            chain=chain,
        )


@contextmanager
def open_logdb(home: Path, database_url: str = "") -> Iterator[LogDB]:
    settings = Settings(home=home, database_url=database_url)
    engine, _info, _token = open_instance(settings)
    try:
        yield LogDB(settings, engine)
    finally:
        engine.dispose()


def make_record(i: int) -> dict[str, Any]:
    """A record like proxy.py makes: some allowed calls, some refused ones."""
    refused = i % 9 == 4
    request_body = f'{{"n": {i}}}'.encode()
    response_body = b'{"name": "\xd8\xb2\xd9\x87\xd8\xb1\xd8\xa7"}' if not refused else b"{}"
    return {
        "ts": now_rfc3339(),
        "request_id": str(uuid.uuid4()),
        "client": CLIENT if i % 13 else None,
        "service": SERVICES[i % 2],
        "method": "POST" if i % 3 == 0 else "GET",
        "path": f"/persons/{i}",
        "query_hash": hashlib.sha256(f"q={i}".encode()).hexdigest() if i % 4 else None,
        "purpose": "identity-verification" if i % 5 else "تأیید هویت",
        "subject_ref": hashlib.sha256(f"subject-{i % 17}".encode()).hexdigest(),
        "user": f"کاربر-{i % 7}" if i % 2 else None,
        "status": 403 if refused else 200,
        "outcome": "access-denied" if refused else "ok",
        "request_hash": hashlib.sha256(request_body).hexdigest(),
        "response_hash": hashlib.sha256(response_body).hexdigest(),
        "request_bytes": len(request_body),
        "response_bytes": len(response_body),
        "duration_us": 800 + (i * 37) % 5000,
    }


def run_writers(writers: list[LogWriter], body: Callable[..., Any]) -> Any:
    """Start the writers on a fresh event loop, run ``await body(*writers)``, stop them."""

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        for w in writers:
            w.start(loop)
        try:
            return await body(*writers)
        finally:
            for w in writers:
                await asyncio.to_thread(w.stop)

    return asyncio.run(main())


async def append_many(
    writer: LogWriter, n: int, *, start: int = 0, concurrent: bool = True
) -> list[int]:
    """Append n records: all at once (group commit) or one after another."""
    if concurrent:
        return list(
            await asyncio.gather(*(writer.append(make_record(start + i)) for i in range(n)))
        )
    return [await writer.append(make_record(start + i)) for i in range(n)]


def build_log(db: LogDB, n: int, *, seal_every_records: int = 50, waves: int = 4) -> None:
    """n records written in a few concurrent waves, sealed every few records and at stop."""

    async def body(w: LogWriter) -> None:
        per = -(-n // waves)
        for start in range(0, n, per):
            await append_many(w, min(per, n - start), start=start)

    run_writers([db.writer(seal_every_records=seal_every_records)], body)


def copy_sqlite(src: LogDB, home: Path) -> LogDB:
    """A consistent copy of an SQLite instance in another home (the backup API)."""
    home.mkdir(parents=True)
    source = sqlite3.connect(src.settings.db_url.removeprefix("sqlite:///"))
    target = sqlite3.connect(home / "dargah.db")
    with target:
        source.backup(target)
    source.close()
    target.close()
    settings = Settings(home=home)
    engine, _info, _token = open_instance(settings)
    return LogDB(settings, engine)


def unique_name() -> str:
    return f"dargah_test_{secrets.token_hex(4)}"
