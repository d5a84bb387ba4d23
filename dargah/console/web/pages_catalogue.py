"""Public services (catalogue cards): the list, a card's form, and uploading a catalogue file.

A card from the form and an uploaded CSV or JSON file both go through the registry's own
import (:func:`~dargah.registry.catalogue.import_catalogue`): the same field rules, the same
all-or-nothing transaction and audit entry. An agency administrator's import is held to its
own agency (rows naming another agency, or cards already another agency's, are refused with
their line and reason); the operator may import for any agency, or the whole catalogue.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import select
from starlette.responses import RedirectResponse, Response

from dargah.console.web import card_form, inputs, policy
from dargah.console.web.guard import Page, requires
from dargah.console.web.policy import AGENCY_ADMIN, ALL, OPERATOR
from dargah.core.errors import BadRequest, NotFound
from dargah.registry import members
from dargah.registry.catalogue import ImportReport, import_catalogue
from dargah.registry.catalogue.service import row_card
from dargah.registry.instance import instance_info
from dargah.store.tables import public_service_reports, public_services

UPLOAD_BYTES = 20 * 1024 * 1024
LIST_LIMIT = 500
_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def _cards_of(page: Page, member: str | None) -> list[dict[str, Any]]:
    t = public_services.c
    q = select(
        t.service_id, t.member_id, t.title_fa, t.title_en, t.status, t.declared_level, t.updated_at
    ).order_by(t.service_id)
    if member:
        q = q.where(t.member_id == member)
    with page.engine.connect() as conn:
        return [dict(r) for r in conn.execute(q.limit(LIST_LIMIT)).mappings()]


def _owners(page: Page) -> list[dict[str, Any]]:
    with page.engine.connect() as conn:
        return [
            m
            for m in members.list_members(conn)
            if m["status"] == "active" and policy.can_change(page.me, m["id"])
        ]


@requires(*ALL)
def catalogue_list(page: Page) -> Response:
    wanted = inputs.member_id(page.query, "member")
    if wanted is not None:
        policy.require_visible(page.me, wanted)
    member = wanted or policy.scope(page.me)
    return page.render(
        "catalogue.html",
        cards=_cards_of(page, member),
        limit=LIST_LIMIT,
        member=member or "",
        owners=_owners(page) if policy.may_register(page.me) else [],
        report=None,
        problems=[],
        upload_name="",
    )


def _stored_card(page: Page, service_id: str) -> tuple[dict[str, Any], str]:
    with page.engine.connect() as conn:
        row = conn.execute(
            select(public_services).where(public_services.c.service_id == service_id)
        ).first()
        if row is None:
            raise NotFound(f"no public service {service_id}", "خدمتی با این شناسه یافت نشد")
        q = select(public_service_reports).where(public_service_reports.c.service_id == service_id)
        reports = [dict(r) for r in conn.execute(q).mappings()]
    return row_card(dict(row._mapping), reports), str(row.member_id)


def _service_number(source: Any, name: str = "id") -> str | None:
    value = inputs.text(source, name, 20)
    if value is not None and not (len(value) == 11 and value.isascii() and value.isdigit()):
        raise BadRequest("not a public service ID", "شناسهٔ خدمت باید ۱۱ رقم باشد")
    return value


@requires(*ALL)
def card_page(page: Page) -> Response:
    """A card (``?id=`` its 11-digit service ID) with its form, or the form for a new card."""
    sid = _service_number(page.query)
    if sid is None:
        owners = _owners(page)
        if not owners:
            raise BadRequest("nothing to register for", "شما برای هیچ دستگاهی خدمت ثبت نمی‌کنید")
        return page.render("card.html", **card_form.context(None, "", owners, True, stored=False))
    card, member = _stored_card(page, sid)
    policy.require_visible(page.me, member)
    may = policy.can_change(page.me, member)
    context = card_form.context(card, member, [], may, stored=True)
    return page.render("card.html", saved=page.query.get("saved") == "1", **context)


def _import(
    page: Page, files: list[tuple[str, bytes]], legal_id: str | None
) -> tuple[ImportReport, list[str]]:
    with page.engine.connect() as conn:
        instance = instance_info(conn).code
    with tempfile.TemporaryDirectory(prefix="dargah-console-") as folder:
        paths = []
        for i, (name, data) in enumerate(files):
            path = Path(folder) / f"{i}-{_NAME.sub('_', Path(name).name)[-80:] or 'catalogue'}"
            path.write_bytes(data)
            paths.append(str(path))
        report = import_catalogue(
            page.engine, paths, actor=page.me.actor, instance=instance, agency=legal_id
        )
    return report, paths


def _problems(report: ImportReport, names: dict[str, str]) -> list[dict[str, Any]]:
    """Each problem with the uploaded file's own name and its line (or JSON path)."""
    out = []
    for p in report.problems:
        name = names.get(p.file, p.file)
        out.append(
            {
                "severity": p.severity,
                "where": f"{name}:{p.line}" if p.line else f"{name}:{p.path}" if p.path else name,
                "line": p.line,
                "service_id": p.service_id,
                "field": p.field,
                "reason": p.reason,
                "reason_fa": p.reason_fa,
            }
        )
    return out


@requires(OPERATOR, AGENCY_ADMIN)
def card_save(page: Page) -> Response:
    sid = _service_number(page.form, "service_id")
    if sid is None:
        raise BadRequest("service_id is required", "شناسهٔ خدمت (۱۱ رقم) را بنویسید")
    member = inputs.member_id(page.form, "member")
    if member is None:
        raise BadRequest("member is required", "دستگاه را انتخاب کنید")
    try:
        card, stored_member = _stored_card(page, sid)
        stored = True
    except NotFound:
        card, stored_member, stored = {}, member, False
    policy.require_change(page.me, member)
    policy.require_change(page.me, stored_member)
    card = card_form.apply(card, page.form, sid, member.split("/")[2])
    body = json.dumps({"services": [card]}, ensure_ascii=False).encode()
    report, _ = _import(page, [("card.json", body)], member.split("/")[2])
    if report.written:
        return RedirectResponse(f"/console/card?id={sid}&saved=1", 303)
    errors = [p for p in _problems(report, {}) if p["severity"] == "error"]
    owners = [] if stored else _owners(page)
    context = card_form.context(card, member, owners, True, stored=stored, errors=errors)
    return page.render("card.html", 400, **context)


@requires(OPERATOR, AGENCY_ADMIN)
def catalogue_upload(page: Page) -> Response:
    upload = page.files.get("file")
    if upload is None or not upload[1]:
        raise BadRequest("no file", "پرونده‌ای (CSV یا JSON) برای بارگذاری انتخاب کنید")
    member = policy.import_scope(page.me, inputs.member_id(page.form, "member"))
    legal_id = member.split("/")[2] if member else None
    report, paths = _import(page, [upload], legal_id)
    shown = _problems(report, {paths[0]: upload[0]})
    return page.render(
        "catalogue.html",
        200 if report.written else 400,
        cards=_cards_of(page, member or policy.scope(page.me)),
        limit=LIST_LIMIT,
        member=member or "",
        owners=_owners(page),
        report=report,
        problems=shown,
        upload_name=upload[0],
    )


PAGES = [
    ("/console/catalogue", catalogue_list, False),
    ("/console/catalogue", catalogue_upload, True),
    ("/console/card", card_page, False),
    ("/console/card", card_save, True),
]
UPLOADS = {("/console/catalogue", True): UPLOAD_BYTES}
