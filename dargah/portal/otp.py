"""One-time sign-in codes: issued to the mobile registered for a national code, checked once.

Limits, counted in the database so every process agrees:

- a code lives ``DARGAH_OTP_TTL`` seconds (120 by default) and is good for one sign-in;
- a code dies after :data:`TRIES_PER_CODE` wrong entries;
- a national code gets at most :data:`CODES_PER_HOUR` codes an hour, one per
  :data:`RESEND_SECONDS`, and at most :data:`FAILURES_PER_HOUR` wrong entries an hour
  across all its codes, after which sign-in waits.

Only a salted SHA-256 of each code is kept; the text goes to the SMS outbox.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, func, insert, select, text, update

from dargah.store.people_tables import otp_codes
from dargah.store.tables import outbox

TRIES_PER_CODE = 3
CODES_PER_HOUR = 5
FAILURES_PER_HOUR = 10
RESEND_SECONDS = 30
CODE_DIGITS = 6


class SignInRefused(Exception):
    """Sign-in cannot go on now; ``message_fa`` says why to the citizen."""

    def __init__(self, message_fa: str) -> None:
        super().__init__(message_fa)
        self.message_fa = message_fa


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _hash(code: str, salt: str) -> str:
    return salt + "$" + hashlib.sha256(f"{salt}:{code}".encode()).hexdigest()


def _matches(code: str, stored: str) -> bool:
    salt = stored.split("$", 1)[0]
    return hmac.compare_digest(_hash(code, salt), stored)


def _one_at_a_time(conn: Connection, national_code: str) -> None:
    """Serialise sign-in work on one national code, so that its limits hold under parallel
    requests: on PostgreSQL a transaction-scoped advisory lock; SQLite's write transactions
    (``BEGIN IMMEDIATE``) already run one at a time."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"otp:{national_code}"}
        )


def mask_mobile(mobile: str) -> str:
    return mobile[:4] + "•••" + mobile[-4:] if len(mobile) >= 8 else "•••"


@dataclass(frozen=True, slots=True)
class Issued:
    mobile: str
    expires_at: datetime


def issue(engine: Engine, national_code: str, mobile: str, ttl: int) -> Issued:
    """Send a new code to ``mobile`` (through the outbox) unless a limit says wait."""
    now = datetime.now(UTC)
    hour_ago = _iso(now - timedelta(hours=1))
    with engine.begin() as conn:
        _one_at_a_time(conn, national_code)
        recent = conn.execute(
            select(
                func.count(),
                func.max(otp_codes.c.created_at),
                func.coalesce(func.sum(otp_codes.c.attempts), 0),
            ).where(otp_codes.c.national_code == national_code, otp_codes.c.created_at > hour_ago)
        ).one()
        count, last, failures = int(recent[0]), recent[1], int(recent[2])
        if failures >= FAILURES_PER_HOUR:
            raise SignInRefused(
                "به دلیل ورود نادرست پیاپی، ورود با این کد ملی تا یک ساعت ممکن نیست."
            )
        if count >= CODES_PER_HOUR:
            raise SignInRefused(
                "برای این کد ملی در یک ساعت گذشته کد زیادی فرستاده شده است. کمی بعد دوباره امتحان کنید."
            )
        if last is not None and last > _iso(now - timedelta(seconds=RESEND_SECONDS)):
            raise SignInRefused(
                f"کد تازه‌ای فرستاده شده است. برای کد دوباره {RESEND_SECONDS} ثانیه صبر کنید."
            )
        code = "".join(str(secrets.randbelow(10)) for _ in range(CODE_DIGITS))
        expires = now + timedelta(seconds=ttl)
        conn.execute(
            update(otp_codes)
            .where(otp_codes.c.national_code == national_code, otp_codes.c.used_at.is_(None))
            .values(used_at=_iso(now))
        )  # a new code replaces the old one
        conn.execute(
            insert(otp_codes).values(
                national_code=national_code,
                mobile=mobile,
                code_hash=_hash(code, secrets.token_hex(8)),
                created_at=_iso(now),
                expires_at=_iso(expires),
                attempts=0,
            )
        )
        conn.execute(
            insert(outbox).values(
                channel="sms",
                recipient=mobile,
                subject=None,
                text=f"درگاه ملی خدمات: کد ورود شما {code} است. این کد را به هیچ‌کس ندهید.",
                code=code,
                sent_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
        )
    return Issued(mobile, expires)


def verify(engine: Engine, national_code: str, code: str) -> None:
    """Accept ``code`` for ``national_code`` (and use it up), or raise :class:`SignInRefused`."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        _one_at_a_time(conn, national_code)
        failures = conn.execute(
            select(func.coalesce(func.sum(otp_codes.c.attempts), 0)).where(
                otp_codes.c.national_code == national_code,
                otp_codes.c.created_at > _iso(now - timedelta(hours=1)),
            )
        ).scalar_one()
        if int(failures) >= FAILURES_PER_HOUR:
            raise SignInRefused(
                "به دلیل ورود نادرست پیاپی، ورود با این کد ملی تا یک ساعت ممکن نیست."
            )
        row = conn.execute(
            select(otp_codes)
            .where(otp_codes.c.national_code == national_code, otp_codes.c.used_at.is_(None))
            .order_by(otp_codes.c.id.desc())
            .limit(1)
        ).first()
        if row is None or row.expires_at <= _iso(now):
            raise SignInRefused("کد ورود منقضی شده یا به کار رفته است. کد تازه بگیرید.")
        wrong: str | None = None
        if code.isdigit() and len(code) == CODE_DIGITS and _matches(code, row.code_hash):
            conn.execute(
                update(otp_codes).where(otp_codes.c.id == row.id).values(used_at=_iso(now))
            )
        else:
            attempts = row.attempts + 1
            values: dict[str, object] = {"attempts": attempts}
            if attempts >= TRIES_PER_CODE:
                values["used_at"] = _iso(now)
                wrong = "کد ورود چند بار نادرست وارد شد و باطل شد. کد تازه بگیرید."
            else:
                left = TRIES_PER_CODE - attempts
                wrong = f"کد ورود درست نیست. {left} بار دیگر می‌توانید امتحان کنید."
            conn.execute(update(otp_codes).where(otp_codes.c.id == row.id).values(**values))
    if wrong is not None:  # raised after the commit, so that the failed try is counted
        raise SignInRefused(wrong)
