"""Welfare (بهزیستی): eligibility for support programmes, and applications for them.

Applications live in memory. Their status moves on by itself, so that a
tracking page has something to show: ``received``, then ``under-review``
after :data:`REVIEW_AFTER` seconds, then ``approved`` or ``rejected`` (by
eligibility at submission) after :data:`DECIDE_AFTER` seconds. ``POST
/events`` is a webhook for ``birth-registered.v1`` deliveries: it opens a
newborn-package application for the mother by itself (a proactive service).
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from dargah.core.identifiers import is_national_code
from dargah.sandbox.citizens import Citizen
from dargah.sandbox.directory import CitizenDirectory
from dargah.sandbox.providers.common import (
    ProviderContext,
    bad_national_code,
    citizen_not_found,
    json_response,
    person_route,
    problem,
)

PROGRAMS: dict[str, str] = {
    "elderly-pension": "مستمری سالمندان",
    "child-support": "حمایت از کودکان بی‌سرپرست",
    "living-allowance": "کمک‌هزینه معیشتی",
    "newborn-package": "بسته حمایتی نوزاد",
    "disability-card": "کارت معلولیت",
    "housing-aid": "کمک مسکن مددجویان",
}
SERVICE_PROGRAMS = {
    "21100000002": "newborn-package",
    "21100000003": "disability-card",
    "21100000004": "housing-aid",
}
"""The public services (national catalogue IDs) whose applications this agency receives."""
PENSION_CHOICES = {
    "pension": "elderly-pension",
    "housing": "housing-aid",
    "education": "child-support",
}
ALWAYS_ELIGIBLE = ("disability-card", "housing-aid")
STATUS_FA = {
    "received": "دریافت شد",
    "under-review": "در حال بررسی",
    "approved": "تأیید شد",
    "rejected": "رد شد",
}
REVIEW_AFTER = 15.0
DECIDE_AFTER = 45.0
TIMINGS = {"review": REVIEW_AFTER, "decide": DECIDE_AFTER}
"""How long an application waits before review and decision (the demo may shorten them)."""
SERVICE = "benefit-application.v1"


def _age(born: str, today: date) -> int:
    b = date.fromisoformat(born)
    return today.year - b.year - ((today.month, today.day) < (b.month, b.day))


def eligibility(c: Citizen, directory: CitizenDirectory, today: date) -> dict[str, list[str]]:
    """Programme code -> reasons (Persian) for each programme the citizen may get."""
    if not c.alive:
        return {}
    age, found = _age(c.birth_date, today), {}
    if age >= 65 and c.taxpayer_status != "active":
        found["elderly-pension"] = ["سن ۶۵ سال یا بیشتر", "نداشتن پرونده مالیاتی فعال"]
    parents = [directory.get(p) for p in (c.father_code, c.mother_code) if p]
    if age < 18 and any(p is not None and not p.alive for p in parents):
        found["child-support"] = ["سن کمتر از ۱۸ سال", "فوت پدر یا مادر"]
    if 18 <= age < 65 and c.taxpayer_status == "none" and not c.vehicles:
        found["living-allowance"] = ["نداشتن پرونده مالیاتی", "نداشتن خودرو"]
    babies = [directory.get(k) for k in c.children]
    if c.gender == "female" and any(b and _age(b.birth_date, today) < 1 for b in babies):
        found["newborn-package"] = ["داشتن فرزند زیر یک سال"]
    return found


@dataclass
class Application:
    national_code: str
    program: str
    decision: str
    channel: str = "request"
    details: dict[str, Any] = field(default_factory=dict)
    service_id: str | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    tracking_code: str = field(default_factory=lambda: str(10**11 + secrets.randbelow(9 * 10**11)))
    submitted: float = field(default_factory=time.time)

    def view(self) -> dict[str, Any]:
        elapsed = time.time() - self.submitted
        status = "received" if elapsed < TIMINGS["review"] else "under-review"
        if elapsed >= TIMINGS["decide"]:
            status = self.decision
        return {
            "id": self.id,
            "tracking_code": self.tracking_code,
            "national_code": self.national_code,
            "program": self.program,
            "program_title_fa": PROGRAMS[self.program],
            "service_id": self.service_id
            or next((k for k, v in SERVICE_PROGRAMS.items() if v == self.program), None),
            "status": status,
            "status_fa": STATUS_FA[status],
            "channel": self.channel,
            "details": self.details,
            "submitted_at": datetime.fromtimestamp(self.submitted, UTC).isoformat(),
        }


class ApplicationBook:
    """Every application of one welfare app, by id, tracking code and citizen."""

    def __init__(self, directory: CitizenDirectory) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._by_key: dict[str, Application] = {}
        self._by_citizen: dict[str, list[Application]] = {}
        self.seen_events: set[str] = set()

    def open(
        self,
        c: Citizen,
        program: str,
        channel: str,
        details: dict[str, Any],
        service_id: str | None = None,
    ) -> Application:
        """A new application, or the citizen's pending or approved one for the programme."""
        eligible = eligibility(c, self.directory, date.today())
        with self._lock:
            for old in self._by_citizen.get(c.national_code, []):
                if old.program == program and old.view()["status"] != "rejected":
                    return old
            ok = program in eligible or program in ALWAYS_ELIGIBLE
            app = Application(
                c.national_code,
                program,
                "approved" if ok else "rejected",
                channel,
                details,
                service_id,
            )
            self._by_key[app.id] = self._by_key[app.tracking_code] = app
            self._by_citizen.setdefault(c.national_code, []).append(app)
            return app

    def get(self, key: str) -> Application | None:
        return self._by_key.get(key)

    def of(self, national_code: str) -> list[Application]:
        with self._lock:
            return list(self._by_citizen.get(national_code, []))


def _program_of(body: Any) -> str | None:
    """The programme an application asks for: named, or implied by the public service."""
    if not isinstance(body, dict):
        return None
    if body.get("program") in PROGRAMS:
        return str(body["program"])
    sid = body.get("service_id")
    if sid == "21100000001":
        data = body.get("data")
        choice = data.get("programme") if isinstance(data, dict) else None
        return PENSION_CHOICES.get(str(choice), "elderly-pension")
    return SERVICE_PROGRAMS.get(str(sid)) if sid is not None else None


def _bad_application(detail: str, detail_fa: str) -> Response:
    return problem(400, "invalid-application", "Invalid application", detail, detail_fa)


def routes(ctx: ProviderContext) -> list[BaseRoute]:
    book = ApplicationBook(ctx.directory)

    def eligibility_view(c: Citizen) -> dict[str, Any]:
        found = eligibility(c, ctx.directory, date.today())
        return {
            "national_code": c.national_code,
            "eligible": bool(found),
            "programs": [{"code": p, "title_fa": PROGRAMS[p]} for p in found],
            "reasons_fa": [r for reasons in found.values() for r in reasons],
        }

    def applications_view(c: Citizen) -> dict[str, Any]:
        return {
            "national_code": c.national_code,
            "applications": [a.view() for a in book.of(c.national_code)],
        }

    async def submit(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        program = _program_of(body)
        if not isinstance(body, dict) or program is None:
            return _bad_application(
                "the body must be a JSON object with national_code and a program (one of "
                + ", ".join(PROGRAMS)
                + ") or the service_id of one of this agency's public services",
                "کد ملی و نوع برنامه حمایتی لازم است",
            )
        code = str(body.get("national_code", ""))
        refused = ctx.refuse(request, SERVICE, subject=code)
        if refused is not None:
            return refused
        if not is_national_code(code):
            return bad_national_code(code)
        citizen = ctx.directory.get(code)
        if citizen is None:
            return citizen_not_found(code)
        details = body.get("details") or body.get("data")
        service_id = body.get("service_id") if isinstance(body.get("service_id"), str) else None
        app = book.open(
            citizen, program, "request", details if isinstance(details, dict) else {}, service_id
        )
        return json_response(app.view(), 201)

    async def track(request: Request) -> Response:
        refused = ctx.refuse(request, SERVICE)
        if refused is not None:
            return refused
        app = book.get(request.path_params["application_id"])
        if app is None:
            return problem(
                404,
                "application-not-found",
                "Application not found",
                "no application has this id or tracking code",
                "درخواستی با این شناسه یا کد رهگیری یافت نشد",
            )
        return ctx.refuse(request, SERVICE, subject=app.national_code) or json_response(app.view())

    async def events(request: Request) -> Response:
        agency = ctx.agency
        refused = ctx.delivery_refused(request, f"/{agency.legal_id}/{agency.subsystem_code}")
        if refused is not None:
            return refused
        try:
            event = await request.json()
        except ValueError:
            event = None
        if not isinstance(event, dict) or not isinstance(event.get("id"), str):
            return _bad_application("a CloudEvents JSON event is expected", "رویداد نامعتبر است")
        if event["id"] in book.seen_events:
            return json_response({"accepted": True, "duplicate": True})
        book.seen_events.add(event["id"])
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        opened = None
        if str(event.get("type", "")).endswith("birth-registered.v1") and data:
            mother = ctx.directory.get(str(data.get("mother_national_code", "")))
            if mother is not None:
                child = {"child_national_code": str(data.get("national_code", ""))}
                opened = book.open(mother, "newborn-package", "proactive", child).view()
        return json_response({"accepted": True, "duplicate": False, "application": opened})

    return [
        person_route(
            ctx, "/eligibility/{national_code}", "eligibility-inquiry.v1", eligibility_view
        ),
        person_route(ctx, "/persons/{national_code}/applications", SERVICE, applications_view),
        Route("/applications", submit, methods=["POST"]),
        Route("/applications/{application_id}", track, methods=["GET"]),
        Route("/events", events, methods=["POST"]),
    ]
