"""Console accounts: who may sign in to the web console, with which role, and how sign-in is checked.

Passwords are kept as scrypt hashes (``scrypt$N$r$p$salt$hash``, base64). Failed sign-ins are
audit entries (``security:console:refuse``) and are counted from the audit trail, so every
process of an instance agrees on the limit: after :data:`MAX_FAILURES` failures for one
username within :data:`FAILURE_WINDOW`, that username is refused until the window has passed,
even with the right password. Failures are counted per client address as well
(:data:`dargah.web.attempts.CONSOLE_FAILURES`), so that one client cannot try every other
name. Unknown usernames cost the same hashing time as known ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from dargah.core.clock import now_rfc3339, rfc3339
from dargah.core.errors import BadRequest, Conflict, NotFound
from dargah.core.identifiers import InvalidIdentifier, parse_member_id
from dargah.registry import audit
from dargah.registry.audit import Action
from dargah.registry.members import get_member
from dargah.store.people_tables import console_users
from dargah.store.tables import audit_log
from dargah.web import attempts

ROLES = ("operator", "agency-admin", "auditor")
ROLE_NAMES = {"operator": "راهبر", "agency-admin": "مدیر دستگاه", "auditor": "حسابرس"}
USERNAME_RE = re.compile(r"[a-z][a-z0-9._-]{1,63}")
MIN_PASSWORD = 10
MAX_PASSWORD = 200
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)
_N, _R, _P = 2**14, 8, 1


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    username: str
    role: str
    member_id: str | None
    display_name: str | None

    @property
    def actor(self) -> str:
        """The name written to the audit trail for this user's changes."""
        return f"console:{self.username}"

    @property
    def role_fa(self) -> str:
        return ROLE_NAMES.get(self.role, self.role)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def _user(row: Any) -> ConsoleUser:
    return ConsoleUser(row.username, row.role, row.member_id, row.display_name)


def _check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise BadRequest(
            f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters",
            f"گذرواژه باید دست‌کم {MIN_PASSWORD} نویسه باشد",
        )


def add_user(
    conn: Connection,
    username: str,
    password: str,
    role: str,
    actor: str,
    *,
    member_id: str | None = None,
    display_name: str | None = None,
) -> ConsoleUser:
    """Create an active account; an agency administrator belongs to an existing member."""
    if not USERNAME_RE.fullmatch(username):
        raise BadRequest(
            "a username is 2-64 lowercase letters, digits, '.', '_' or '-', starting with a letter",
            "نام کاربری نامعتبر است",
        )
    if role not in ROLES:
        raise BadRequest(f"role must be one of {', '.join(ROLES)}", "نقش نامعتبر است")
    if role == "agency-admin":
        if not member_id:
            raise BadRequest("an agency-admin needs --member", "مدیر دستگاه باید دستگاه داشته باشد")
        try:
            parse_member_id(member_id)
        except InvalidIdentifier as exc:
            raise BadRequest(str(exc), "شناسه دستگاه نامعتبر است") from exc
        get_member(conn, member_id)
    elif member_id:
        raise BadRequest("only an agency-admin belongs to a member", "فقط مدیر دستگاه عضو دارد")
    _check_password(password)
    exists = conn.execute(
        select(console_users.c.username).where(console_users.c.username == username)
    ).first()
    if exists:
        raise Conflict(f"console user {username} exists", "این نام کاربری پیش‌تر ثبت شده است")
    row = {
        "username": username,
        "password_hash": hash_password(password),
        "role": role,
        "member_id": member_id,
        "display_name": display_name,
        "active": 1,
        "created_at": now_rfc3339(),
    }
    conn.execute(insert(console_users).values(**row))
    public = {k: v for k, v in row.items() if k != "password_hash"}
    audit.record(conn, actor, Action.CONSOLE_USER_ADD, _target(username), None, public, bump=False)
    return ConsoleUser(username, role, member_id, display_name)


def ensure_user(engine: Engine, username: str, password: str, role: str, actor: str) -> None:
    """Create the account unless it exists; then make its password ``password`` (the demo's admin)."""
    with engine.begin() as conn:
        row = conn.execute(
            select(console_users).where(console_users.c.username == username)
        ).first()
        if row is None:
            add_user(conn, username, password, role, actor, display_name=username)
        elif not verify_password(password, row.password_hash):
            conn.execute(
                update(console_users)
                .where(console_users.c.username == username)
                .values(password_hash=hash_password(password), active=1)
            )


def list_users(conn: Connection) -> list[dict[str, Any]]:
    q = select(console_users).order_by(console_users.c.username)
    return [
        {k: v for k, v in dict(r).items() if k != "password_hash"}
        for r in conn.execute(q).mappings()
    ]


def set_active(conn: Connection, username: str, active: bool, actor: str) -> None:
    found = conn.execute(
        update(console_users)
        .where(console_users.c.username == username)
        .values(active=1 if active else 0)
    ).rowcount
    if not found:
        raise NotFound(f"no console user {username}", "کاربر یافت نشد")
    audit.record(
        conn,
        actor,
        Action.CONSOLE_USER_UPDATE,
        _target(username),
        None,
        {"active": active},
        bump=False,
    )


def active_user(conn: Connection, username: str) -> ConsoleUser | None:
    """The account behind a session, if it still exists and is active."""
    row = conn.execute(
        select(console_users).where(
            console_users.c.username == username, console_users.c.active == 1
        )
    ).first()
    return _user(row) if row is not None else None


def _target(username: str) -> str:
    return f"console-user:{username}"


def recent_failures(conn: Connection, username: str, now: datetime | None = None) -> int:
    return len(_failure_times(conn, username, now))


def _failure_times(conn: Connection, username: str, now: datetime | None = None) -> list[str]:
    since = rfc3339((now or datetime.now(UTC)) - FAILURE_WINDOW)
    q = (
        select(audit_log.c.ts)
        .where(
            audit_log.c.target == _target(username),
            audit_log.c.action == str(Action.CONSOLE_SIGN_IN_REFUSE),
            audit_log.c.ts >= since,
        )
        .order_by(audit_log.c.ts)
    )
    return [str(ts) for ts in conn.execute(q).scalars()]


def _unlocks_in(times: list[str], now: datetime) -> int:
    """Seconds until fewer than MAX_FAILURES of ``times`` are in the window."""
    filling = datetime.fromisoformat(times[len(times) - MAX_FAILURES].replace("Z", "+00:00"))
    return max(1, math.ceil((filling + FAILURE_WINDOW - now).total_seconds()))


class SignInRefused(Exception):
    """Wrong username or password, or too many failures: ``locked`` for the username,
    ``from_address`` for the client's address; ``retry_after`` seconds when locked."""

    def __init__(self, locked: bool, retry_after: int = 0, from_address: bool = False) -> None:
        super().__init__("locked" if locked or from_address else "wrong username or password")
        self.locked = locked
        self.from_address = from_address
        self.retry_after = retry_after


def sign_in(engine: Engine, username: str, password: str, source: str) -> ConsoleUser:
    """The account for a username and password, or :class:`SignInRefused`. Blocking."""
    username = username.strip().lower()[:64]
    password = password[:MAX_PASSWORD]
    # Read and hash outside any write transaction: scrypt takes tens of milliseconds, and on
    # SQLite a write transaction holds the whole database.
    now = datetime.now(UTC)
    with engine.connect() as conn:
        try:
            attempts.check(conn, attempts.CONSOLE_FAILURES, source, now)
        except attempts.TooManyAttempts as busy:
            raise SignInRefused(False, busy.retry_after, from_address=True) from None
        row = conn.execute(
            select(console_users).where(console_users.c.username == username)
        ).first()
        failures = _failure_times(conn, username, now)
        locked = len(failures) >= MAX_FAILURES
    ok = not locked and verify_password(
        password, row.password_hash if row is not None else _DUMMY_HASH
    )
    refused = row is None or not row.active or not ok or locked
    with engine.begin() as conn:
        if refused:  # recorded, and committed, before the refusal is raised
            reason = "locked" if locked else "wrong password or unknown or inactive user"
            audit.record(
                conn,
                "console:anonymous",
                Action.CONSOLE_SIGN_IN_REFUSE,
                _target(username),
                None,
                {"reason": reason, "from": source},
                bump=False,
            )
            attempts.record(conn, attempts.CONSOLE_FAILURES, source, now)
            user = None
        else:
            assert row is not None
            user = _user(row)
            audit.record(
                conn,
                f"console:{username}",
                Action.CONSOLE_SIGN_IN,
                _target(username),
                None,
                {"from": source},
                bump=False,
            )
    if user is None:
        raise SignInRefused(locked, _unlocks_in(failures, now) if locked else 0)
    return user
