"""Sign-in limits per client address, shared by every process of an instance.

The console limits failures per user name and the portal per national code; these limits
add the other side, per source: one client trying many names or many national codes. Each
counted attempt is a row in ``sign_in_attempts`` (realm, client address, time), so every
process, on SQLite or PostgreSQL, counts the same ones. The address is the connection's
peer, or behind a proxy listed in ``DARGAH_TRUSTED_PROXIES`` the client it forwards for
(:mod:`dargah.core.forwarded`). A refusal tells how long to wait (``Retry-After``).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, delete, func, insert, select
from starlette.requests import Request

from dargah.core.forwarded import VIA_HEADERS, ClientAddresses
from dargah.core.persian import to_persian_digits
from dargah.store.people_tables import sign_in_attempts


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``most`` attempts of ``realm`` from one address within ``window``."""

    realm: str
    most: int
    window: timedelta


# An office behind one NAT address has many users: these are well above one person's typos.
CONSOLE_FAILURES = Limit("console", 20, timedelta(minutes=15))
PORTAL_FAILURES = Limit("portal", 20, timedelta(hours=1))
PORTAL_CODES = Limit("portal-code", 30, timedelta(hours=1))
LONGEST = max(limit.window for limit in (CONSOLE_FAILURES, PORTAL_FAILURES, PORTAL_CODES))
PRUNE_EVERY = 100


class TooManyAttempts(Exception):
    """Refused for now; ``retry_after`` is in whole seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"too many sign-in attempts from this address; retry after {retry_after} s"
        )
        self.retry_after = retry_after

    @property
    def message_fa(self) -> str:
        minutes = to_persian_digits(max(1, math.ceil(self.retry_after / 60)))
        return (
            "از این نشانی تلاش ناموفق زیادی برای ورود شده است. "
            f"{minutes} دقیقه دیگر دوباره امتحان کنید."
        )


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check(conn: Connection, limit: Limit, source: str, now: datetime | None = None) -> None:
    """Raise :class:`TooManyAttempts` when ``source`` has used up ``limit``."""
    now = now or datetime.now(UTC)
    since = _iso(now - limit.window)
    where = (
        sign_in_attempts.c.realm == limit.realm,
        sign_in_attempts.c.source == source[:64],
        sign_in_attempts.c.at > since,
    )
    count = conn.execute(select(func.count()).where(*where)).scalar_one()
    if count < limit.most:
        return
    # Free again when the attempt that filled the limit leaves the window.
    oldest = conn.execute(
        select(sign_in_attempts.c.at)
        .where(*where)
        .order_by(sign_in_attempts.c.at)
        .offset(int(count) - limit.most)
        .limit(1)
    ).scalar_one()
    leaves = datetime.strptime(oldest, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC) + limit.window
    raise TooManyAttempts(max(1, math.ceil((leaves - now).total_seconds())))


def record(conn: Connection, limit: Limit, source: str, now: datetime | None = None) -> None:
    """Count one attempt of ``source``; its attempts older than the window go, and now and
    then those of every source older than the longest window."""
    now = now or datetime.now(UTC)
    conn.execute(
        delete(sign_in_attempts).where(
            sign_in_attempts.c.realm == limit.realm,
            sign_in_attempts.c.source == source[:64],
            sign_in_attempts.c.at <= _iso(now - limit.window),
        )
    )
    if secrets.randbelow(PRUNE_EVERY) == 0:
        conn.execute(delete(sign_in_attempts).where(sign_in_attempts.c.at <= _iso(now - LONGEST)))
    conn.execute(
        insert(sign_in_attempts).values(realm=limit.realm, source=source[:64], at=_iso(now))
    )


def source_of(request: Request, trusted_proxies: str) -> str:
    """The client address a sign-in is counted by (``unknown`` when there is none)."""
    peer = request.client.host if request.client else None
    via = [(n, v) for n, v in request.scope.get("headers", ()) if n in VIA_HEADERS]
    try:
        addresses = ClientAddresses(trusted_proxies)
    except ValueError:
        addresses = ClientAddresses("")  # a malformed list trusts nobody
    address, _scheme = addresses.client(peer, request.url.scheme, via)
    return address or "unknown"
