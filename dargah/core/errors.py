"""One error hierarchy and one problem+json envelope (RFC 9457) for all of Dargah.

Every error the platform itself produces carries a stable machine ``code``, an
English ``detail`` and a Persian ``detail_fa`` for people.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ProblemType:
    code: str
    status: int
    title: str
    title_fa: str


# The protocol's error table (gsb-protocol.md §4), plus codes added by Dargah.
PROBLEMS: dict[str, ProblemType] = {
    p.code: p
    for p in (
        ProblemType("bad-request", 400, "Bad request", "درخواست نادرست است"),
        ProblemType("unauthenticated", 401, "Unauthenticated", "هویت درخواست‌کننده احراز نشد"),
        ProblemType("access-denied", 403, "Access denied", "دسترسی مجاز نیست"),
        ProblemType(
            "purpose-required", 400, "Purpose required", "هدف استفاده از داده اعلام نشده است"
        ),
        ProblemType(
            "purpose-not-allowed", 403, "Purpose not allowed", "این هدف در مجوز دسترسی نیامده است"
        ),
        ProblemType("subject-required", 400, "Subject required", "کد ملی شخص اعلام نشده است"),
        ProblemType("subject-invalid", 400, "Subject invalid", "کد ملی شخص معتبر نیست"),
        ProblemType("unknown-service", 404, "Unknown service", "چنین خدمتی وجود ندارد"),
        ProblemType("service-disabled", 503, "Service disabled", "خدمت در حال نگهداری است"),
        ProblemType(
            "payload-too-large", 413, "Payload too large", "حجم درخواست بیش از حد مجاز است"
        ),
        ProblemType("rate-limited", 429, "Rate limited", "تعداد درخواست‌ها بیش از سهمیه است"),
        ProblemType("circuit-open", 503, "Circuit open", "ارائه‌دهنده موقتاً در دسترس نیست"),
        ProblemType(
            "provider-unavailable", 502, "Provider unavailable", "ارائه‌دهنده در دسترس نیست"
        ),
        ProblemType("provider-timeout", 504, "Provider timeout", "ارائه‌دهنده به موقع پاسخ نداد"),
        ProblemType(
            "response-too-large",
            502,
            "Response too large",
            "حجم پاسخ ارائه‌دهنده بیش از حد مجاز است",
        ),
        ProblemType("internal", 500, "Internal error", "خطای داخلی رخ داد"),
        # Added by Dargah (allowed by the protocol: new codes only).
        ProblemType(
            "log-unavailable",
            503,
            "Message log unavailable",
            "ثبت رویدادها ممکن نیست؛ درخواست برای حفظ امنیت پذیرفته نشد",
        ),
        ProblemType("not-found", 404, "Not found", "یافت نشد"),
        ProblemType(
            "uri-too-long", 414, "Request target too long", "نشانی درخواست بیش از حد طولانی است"
        ),
        ProblemType(
            "headers-too-large",
            431,
            "Request headers too large",
            "سرآیندهای درخواست بیش از حد بزرگ است",
        ),
        ProblemType("conflict", 409, "Conflict", "با وضعیت فعلی سازگار نیست"),
        ProblemType("method-not-allowed", 405, "Method not allowed", "این روش مجاز نیست"),
    )
}


class DargahError(Exception):
    """Base of every error that Dargah reports to a caller."""

    code = "internal"

    def __init__(self, detail: str, detail_fa: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.detail_fa = detail_fa
        self.extra = extra

    @property
    def status(self) -> int:
        return PROBLEMS[self.code].status

    def problem(self, request_id: str | None = None) -> dict[str, Any]:
        return problem_body(self.code, self.detail, request_id, self.detail_fa, **self.extra)


class BadRequest(DargahError):
    code = "bad-request"


class Unauthenticated(DargahError):
    code = "unauthenticated"


class AccessDenied(DargahError):
    code = "access-denied"


class NotFound(DargahError):
    code = "not-found"


class Conflict(DargahError):
    code = "conflict"


class ServiceError(DargahError):
    """A bus error with an explicit protocol code."""

    def __init__(self, code: str, detail: str, detail_fa: str | None = None, **extra: Any) -> None:
        super().__init__(detail, detail_fa, **extra)
        self.code = code


def problem_body(
    code: str,
    detail: str,
    request_id: str | None = None,
    detail_fa: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    p = PROBLEMS[code]
    body: dict[str, Any] = {
        "type": f"urn:gsb:problem:{code}",
        "title": p.title,
        "status": p.status,
        "code": code,
        "request_id": request_id,
        "detail": detail,
        "detail_fa": detail_fa or p.title_fa,
    }
    body.update(extra)
    return body


def problem_bytes(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


PROBLEM_CONTENT_TYPE = "application/problem+json"
