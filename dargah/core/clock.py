"""Timestamps as the protocol writes them: RFC 3339, UTC, microseconds, ``Z``."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_second: list[object] = [-1, ""]


def rfc3339_ns(ns: int) -> str:
    """``ns`` (Unix nanoseconds) as the protocol writes a time; the date and time part is
    formatted once per second."""
    sec, frac = divmod(ns // 1000, 1_000_000)
    if _second[0] != sec:
        _second[0] = sec
        _second[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return f"{_second[1]}.{frac:06d}Z"


def now_rfc3339() -> str:
    """Now, as the protocol writes it."""
    return rfc3339_ns(time.time_ns())


def now_s() -> int:
    return int(time.time())
