"""Browser sessions and CSRF protection for the portal and the console.

A session is a random 256-bit token in a ``Secure``, ``HttpOnly``, ``SameSite=Lax`` cookie;
the database keeps only its SHA-256, so a copy of the database signs nobody in. Every state
changing form carries a CSRF token: the session's own (bound to it at sign-in) or, before
sign-in, a double-submit token tied to a pre-session cookie. Requests whose ``Origin`` names
another site are refused as well. Sessions live in the database, so every process of an
instance sees every session.

A token is written into a page masked afresh each time (:func:`mask_token`: a random pad and
the token XORed with it), so that compressed pages that also echo a visitor's input do not
leak it byte by byte through their length (BREACH); a form may send it masked or not.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import Engine, delete, insert, select
from starlette.requests import Request
from starlette.responses import Response

from dargah.store.people_tables import web_sessions


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    principal: str
    csrf: str
    expires_at: str


class SessionStore:
    """Sessions of one realm (``portal`` or ``console``), kept in ``web_sessions``."""

    def __init__(self, engine: Engine, realm: str, *, ttl: timedelta) -> None:
        self.engine = engine
        self.realm = realm
        self.ttl = ttl
        self.cookie = f"dargah_{realm}"
        self.pre_cookie = f"dargah_{realm}_pre"

    def create(self, response: Response, principal: str) -> Session:
        """Start a session for ``principal`` and set its cookie on ``response``."""
        token = secrets.token_urlsafe(32)
        now = _now()
        session = Session(principal, secrets.token_urlsafe(24), _iso(now + self.ttl))
        with self.engine.begin() as conn:
            conn.execute(delete(web_sessions).where(web_sessions.c.expires_at < _iso(now)))
            conn.execute(
                insert(web_sessions).values(
                    id_hash=_digest(token),
                    realm=self.realm,
                    principal=principal,
                    csrf=session.csrf,
                    created_at=_iso(now),
                    expires_at=session.expires_at,
                )
            )
        set_cookie(response, self.cookie, token, max_age=int(self.ttl.total_seconds()))
        return session

    def current(self, request: Request) -> Session | None:
        token = request.cookies.get(self.cookie)
        if not token or len(token) > 100:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(
                select(web_sessions).where(
                    web_sessions.c.id_hash == _digest(token), web_sessions.c.realm == self.realm
                )
            ).first()
        if row is None or row.expires_at <= _iso(_now()):
            return None
        return Session(row.principal, row.csrf, row.expires_at)

    def end(self, request: Request, response: Response) -> None:
        token = request.cookies.get(self.cookie)
        if token:
            with self.engine.begin() as conn:
                conn.execute(delete(web_sessions).where(web_sessions.c.id_hash == _digest(token)))
        response.delete_cookie(self.cookie, path="/", secure=True, httponly=True, samesite="lax")

    def end_all(self, principal: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                delete(web_sessions).where(
                    web_sessions.c.realm == self.realm, web_sessions.c.principal == principal
                )
            )

    # -- CSRF ----------------------------------------------------------------------------------

    def pre_token(self, request: Request) -> str:
        """The CSRF token for a form shown before sign-in; set it with :meth:`set_pre_token`."""
        value = request.cookies.get(self.pre_cookie)
        return value if value and len(value) == 43 else secrets.token_urlsafe(32)

    def set_pre_token(self, response: Response, value: str) -> None:
        set_cookie(response, self.pre_cookie, value, max_age=3600)

    def csrf_ok(self, request: Request, submitted: object, session: Session | None) -> bool:
        """Whether a POST carries the right CSRF token (masked or not) and comes from this site."""
        if not same_origin(request) or not isinstance(submitted, str) or not submitted:
            return False
        expected = session.csrf if session is not None else request.cookies.get(self.pre_cookie)
        submitted = unmask_token(submitted)
        return bool(expected) and hmac.compare_digest(submitted, str(expected))


MASKED = "m."


def mask_token(token: str) -> str:
    """``token`` as a page carries it: a fresh random pad, then the token XORed with it."""
    raw = token.encode()
    pad = secrets.token_bytes(len(raw))
    mixed = bytes(a ^ b for a, b in zip(raw, pad, strict=True))
    return MASKED + base64.urlsafe_b64encode(pad + mixed).decode().rstrip("=")


def unmask_token(submitted: str) -> str:
    """The token behind a masked one; anything else as it is."""
    if not submitted.startswith(MASKED) or len(submitted) > 400:
        return submitted
    body = submitted[len(MASKED) :]
    try:
        both = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        return submitted
    half = len(both) // 2
    if not half or len(both) % 2:
        return submitted
    return bytes(a ^ b for a, b in zip(both[:half], both[half:], strict=True)).decode("latin-1")


def same_origin(request: Request) -> bool:
    """False when the browser says the request came from a page of another site."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


def set_cookie(response: Response, name: str, value: str, *, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="lax"
    )
