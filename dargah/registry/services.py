"""Bus services: what provider subsystems offer, and the data items they are the source of."""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import Connection, insert, select, update

from dargah.core.clock import now_rfc3339
from dargah.core.errors import BadRequest, Conflict, NotFound
from dargah.core.identifiers import parse_service_id
from dargah.core.netaddr import BadTarget, TargetPolicy, check_url, target_policy
from dargah.core.settings import Settings
from dargah.registry import audit
from dargah.registry.audit import Action
from dargah.registry.instance import instance_info
from dargah.registry.members import get_subsystem
from dargah.store.tables import services

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_BODY = 10 * 1024 * 1024
DATA_ITEM_RE = re.compile(r"[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)+")
_MUTABLE = {
    "title",
    "base_url",
    "openapi",
    "personal_data",
    "timeout_s",
    "max_body",
    "maintenance",
    "store_bodies",
    "supplies",
}


def outbound_policy(conn: Connection, settings: Settings | None) -> TargetPolicy:
    """The address rules for this instance's outbound URLs: production or not is the
    instance's (its code), the rest comes from ``settings`` (defaults when None)."""
    try:
        return target_policy(settings or Settings(), not instance_info(conn).sandbox)
    except ValueError as exc:
        raise BadRequest(str(exc), "فهرست نشانی‌های مجاز در تنظیمات نادرست است") from exc


def check_outbound_url(
    raw: str, policy: TargetPolicy, what: str, what_fa: str, *, query: bool = False
) -> None:
    """BadRequest unless ``raw`` is a URL the bus may send to (:mod:`dargah.core.netaddr`)."""
    try:
        check_url(raw, policy, query=query)
    except BadTarget as exc:
        raise BadRequest(
            f"{what}: {exc}",
            f"{what_fa} پذیرفته نیست: باید http یا https با نام یا نشانی مجاز، بدون نام کاربری "
            "و گذرواژه باشد و گذرگاه به نشانی‌های داخلی یا ویژه درخواست نمی‌فرستد",
        ) from None


def _validate(values: dict[str, Any], conn: Connection, settings: Settings | None) -> None:
    if "base_url" in values:
        check_outbound_url(
            str(values["base_url"]),
            outbound_policy(conn, settings),
            "the provider base URL",
            "نشانی ارائه‌دهنده",
        )
    if "timeout_s" in values and not (0 < float(values["timeout_s"]) <= 300):
        raise BadRequest(
            "timeout must be between 0 and 300 seconds", "مهلت پاسخ باید بین ۰ و ۳۰۰ ثانیه باشد"
        )
    if "max_body" in values and not (0 < int(values["max_body"]) <= 1 << 30):
        raise BadRequest("body limit must be between 1 byte and 1 GiB", "سقف حجم نامعتبر است")
    for item in values.get("supplies") or []:
        if not DATA_ITEM_RE.fullmatch(item):
            raise BadRequest(
                f"data item {item!r} must look like 'person.identity'",
                f"نام قلم داده {item} نامعتبر است",
            )
    if "openapi" in values and values["openapi"] is not None:
        try:
            doc = (
                json.loads(values["openapi"])
                if isinstance(values["openapi"], str)
                else values["openapi"]
            )
        except ValueError as exc:
            raise BadRequest(
                "the OpenAPI document is not valid JSON", "سند OpenAPI معتبر نیست"
            ) from exc
        if not isinstance(doc, dict):
            raise BadRequest("the OpenAPI document must be a JSON object", "سند OpenAPI معتبر نیست")


def _out(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["supplies"] = (
        json.loads(row["supplies"]) if isinstance(row["supplies"], str) else row["supplies"]
    )
    out["has_openapi"] = bool(row.get("openapi"))
    out.pop("openapi", None)
    return out


def add_service(
    conn: Connection,
    service_id: str,
    base_url: str,
    actor: str,
    *,
    title: str | None = None,
    personal_data: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_body: int = DEFAULT_MAX_BODY,
    openapi: str | None = None,
    supplies: list[str] | None = None,
    store_bodies: bool = False,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Register a service; ``settings`` give the outbound address rules (defaults when None)."""
    sid = parse_service_id(service_id)
    provider = get_subsystem(conn, str(sid.subsystem))
    if provider["status"] != "active":
        raise Conflict(
            f"provider {provider['id']} is {provider['status']}", "سامانه ارائه‌دهنده فعال نیست"
        )
    values = {
        "base_url": base_url,
        "timeout_s": timeout_s,
        "max_body": max_body,
        "supplies": supplies or [],
        "openapi": openapi,
    }
    _validate(values, conn, settings)
    if conn.execute(select(services.c.id).where(services.c.id == service_id)).first():
        raise Conflict(
            f"service {service_id} already exists", f"خدمت {service_id} قبلاً ثبت شده است"
        )
    row = {
        "id": service_id,
        "subsystem_id": str(sid.subsystem),
        "title": title or sid.code,
        "base_url": base_url.rstrip("/"),
        "openapi": openapi if openapi is None or isinstance(openapi, str) else json.dumps(openapi),
        "personal_data": personal_data,
        "timeout_s": float(timeout_s),
        "max_body": int(max_body),
        "maintenance": False,
        "store_bodies": store_bodies,
        "supplies": json.dumps(sorted(set(supplies or []))),
        "status": "active",
        "created_at": now_rfc3339(),
    }
    conn.execute(insert(services).values(**row))
    audit.record(conn, actor, Action.SERVICE_ADD, service_id, None, _out(row))
    return _out(row)


def _get_row(conn: Connection, service_id: str) -> dict[str, Any]:
    row = conn.execute(select(services).where(services.c.id == service_id)).mappings().first()
    if row is None:
        raise NotFound(f"no bus service {service_id}", f"خدمت {service_id} یافت نشد")
    return dict(row)


def get_service(conn: Connection, service_id: str) -> dict[str, Any]:
    return _out(_get_row(conn, service_id))


def get_openapi(conn: Connection, service_id: str) -> str | None:
    return _get_row(conn, service_id)["openapi"]  # type: ignore[no-any-return]


def list_services(conn: Connection, provider: str | None = None) -> list[dict[str, Any]]:
    q = select(services).order_by(services.c.id)
    if provider:
        q = q.where(services.c.subsystem_id == provider)
    return [_out(dict(r)) for r in conn.execute(q).mappings()]


def update_service(
    conn: Connection,
    service_id: str,
    changes: dict[str, Any],
    actor: str,
    settings: Settings | None = None,
) -> dict[str, Any]:
    unknown = set(changes) - _MUTABLE
    if unknown:
        raise BadRequest(
            f"cannot change {', '.join(sorted(unknown))}", "این ویژگی‌ها تغییرپذیر نیستند"
        )
    before = _get_row(conn, service_id)
    _validate(changes, conn, settings)
    values = dict(changes)
    if "supplies" in values:
        values["supplies"] = json.dumps(sorted(set(values["supplies"] or [])))
    if "base_url" in values:
        values["base_url"] = str(values["base_url"]).rstrip("/")
    if (
        "openapi" in values
        and values["openapi"] is not None
        and not isinstance(values["openapi"], str)
    ):
        values["openapi"] = json.dumps(values["openapi"])
    if not values or all(before.get(k) == v for k, v in values.items()):
        return _out(before)  # nothing changes: no audit entry, no new registry version
    conn.execute(update(services).where(services.c.id == service_id).values(**values))
    after = {**before, **values}
    audit.record(conn, actor, Action.SERVICE_UPDATE, service_id, _out(before), _out(after))
    return _out(after)


def remove_service(conn: Connection, service_id: str, actor: str) -> dict[str, Any]:
    before = _get_row(conn, service_id)
    conn.execute(update(services).where(services.c.id == service_id).values(status="removed"))
    after = {**before, "status": "removed"}
    audit.record(conn, actor, Action.SERVICE_REMOVE, service_id, _out(before), _out(after))
    return _out(after)
