"""Admin API tokens: one per operator or automation, each named, revocable and listed.

A token is a 256-bit random secret shown once when it is made; only its SHA-256 is kept.
Making or revoking one is a registry change (audited, and it bumps the change feed's
version), so every process of the instance learns of it the way it learns of a revoked
key: :class:`AdminTokens` keeps the active tokens' hashes in memory and compares the
registry's version at most once a second, so a revocation holds on every node within
about a second (Redis or not); a token it does not know yet (made a moment ago) is looked
up by its hash. A request costs no database write: a token's last use is written at most
once a minute per token and process.

The instance's first token, made with the instance, is named ``operator``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update

from dargah.core.clock import now_rfc3339
from dargah.core.errors import BadRequest, Conflict, NotFound
from dargah.registry import audit
from dargah.registry.audit import current_version
from dargah.registry.instance import hash_secret, new_secret
from dargah.store.tables import admin_tokens

log = logging.getLogger("dargah.registry")

FIRST_TOKEN = "operator"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
CHECK_EVERY_SECONDS = 1.0  # how stale a process's copy of the tokens may be
STALE_AFTER_SECONDS = 5.0  # a copy older than this (database away) admits nobody
RECORD_USE_EVERY_SECONDS = 60.0


def _public(row: Any) -> dict[str, Any]:
    out = {k: row[k] for k in ("name", "created_at", "created_by", "revoked_at", "last_used_at")}
    out["status"] = "revoked" if row["revoked_at"] else "active"
    return out


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise BadRequest(
            f"token name {name[:80]!r} must be 1-63 of a-z, 0-9, '.', '_', '-' "
            "(starting with a letter or digit), e.g. ali.rezaei or ci-deploy",
            "نام توکن باید از حروف کوچک لاتین، رقم، نقطه، خط تیره یا زیرخط باشد",
        )
    return name


def create_token(
    conn: Connection, name: str, actor: str, *, token: str | None = None
) -> tuple[dict[str, Any], str]:
    """Make a token named ``name`` and return (its row, the token). A revoked token's name
    may be used again; an active one's may not."""
    check_name(name)
    existing = conn.execute(select(admin_tokens).where(admin_tokens.c.name == name)).mappings()
    row = existing.first()
    if row is not None and row["revoked_at"] is None:
        raise Conflict(
            f"an active admin token is already named {name}: revoke it first or choose another name",
            "توکن فعالی با این نام وجود دارد",
        )
    if row is not None:
        conn.execute(delete(admin_tokens).where(admin_tokens.c.name == name))
    secret = token or new_secret()
    values = {
        "name": name,
        "token_hash": hash_secret(secret),
        "created_at": now_rfc3339(),
        "created_by": actor,
        "revoked_at": None,
        "last_used_at": None,
    }
    conn.execute(insert(admin_tokens).values(**values))
    audit.record(conn, actor, audit.Action.ADMIN_TOKEN_CREATE, name, None, {"name": name})
    return _public(values), secret


def list_tokens(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(select(admin_tokens).order_by(admin_tokens.c.name)).mappings()
    return [_public(r) for r in rows]


def revoke_token(conn: Connection, name: str, actor: str) -> dict[str, Any]:
    """Revoke a token: every process refuses it within seconds. Revoking twice is no error."""
    row = conn.execute(select(admin_tokens).where(admin_tokens.c.name == name)).mappings().first()
    if row is None:
        raise NotFound(f"no admin token named {name[:80]}", "توکنی با این نام وجود ندارد")
    if row["revoked_at"] is not None:
        return _public(row)
    now = now_rfc3339()
    conn.execute(update(admin_tokens).where(admin_tokens.c.name == name).values(revoked_at=now))
    audit.record(
        conn, actor, audit.Action.ADMIN_TOKEN_REVOKE, name, _public(row), {"revoked_at": now}
    )
    return _public({**row, "revoked_at": now})


class AdminTokens:
    """A process's copy of the active tokens, following the registry's change feed."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._by_hash: dict[str, str] = {}
        self._version: int | None = None
        self._loaded_at = float("-inf")  # monotonic time of the last successful check
        self._used: dict[str, float] = {}

    def check(self, token: str) -> str | None:
        """The name of the active token ``token``, or None. Blocking (database, now and then).

        Raises when the registry cannot be read and this process's copy is older than
        :data:`STALE_AFTER_SECONDS`: a revocation must not be missed, so nobody is admitted.
        """
        self._refresh(CHECK_EVERY_SECONDS)
        digest = hash_secret(token)
        name = self._by_hash.get(digest)
        if name is None:  # perhaps made a moment ago: ask the database (one indexed read)
            name = self._lookup(digest)
        if name is not None:
            self._note_use(name)
        return name

    def _refresh(self, max_age: float) -> None:
        if time.monotonic() - self._loaded_at < max_age:
            return
        with self._lock:
            now = time.monotonic()
            if now - self._loaded_at < max_age:
                return
            try:
                with self._engine.connect() as conn:
                    version = current_version(conn)  # first: a change after it is seen next time
                    if version != self._version:
                        rows = conn.execute(
                            select(admin_tokens.c.name, admin_tokens.c.token_hash).where(
                                admin_tokens.c.revoked_at.is_(None)
                            )
                        ).all()
                        self._by_hash = {h: n for n, h in rows}
                        self._version = version
            except Exception as exc:
                if now - self._loaded_at > STALE_AFTER_SECONDS:
                    self._by_hash = {}
                    self._version = None
                    raise
                log.warning("could not check the admin tokens for changes: %s", exc)
                return
            self._loaded_at = now

    def _lookup(self, digest: str) -> str | None:
        seen = self._version  # kept only if no reload came in between (it may hold a revocation)
        with self._engine.connect() as conn:
            name = conn.execute(
                select(admin_tokens.c.name).where(
                    admin_tokens.c.token_hash == digest, admin_tokens.c.revoked_at.is_(None)
                )
            ).scalar()
        if name is not None and self._version == seen:
            self._by_hash[digest] = name
        return name

    def _note_use(self, name: str) -> None:
        now = time.monotonic()
        if now - self._used.get(name, float("-inf")) < RECORD_USE_EVERY_SECONDS:
            return
        self._used[name] = now
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    update(admin_tokens)
                    .where(admin_tokens.c.name == name)
                    .values(last_used_at=now_rfc3339())
                )
        except Exception as exc:  # the last use is a convenience, not a control
            log.warning("could not record the last use of admin token %s: %s", name, exc)
