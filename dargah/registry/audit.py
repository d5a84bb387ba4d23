"""The audit trail: every registry change, who made it, when, and before/after.

Actions are named ``source:subject:action`` from one enum.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, insert, select, update

from dargah.core.clock import now_rfc3339
from dargah.registry.changes import mark_changed
from dargah.store.tables import audit_log, registry_version


class Action(StrEnum):
    INSTANCE_INIT = "registry:instance:init"
    MEMBER_ADD = "registry:member:add"
    MEMBER_UPDATE = "registry:member:update"
    MEMBER_REVOKE = "registry:member:revoke"
    SUBSYSTEM_ADD = "registry:subsystem:add"
    SUBSYSTEM_REVOKE = "registry:subsystem:revoke"
    SUBSYSTEM_SECRET = "registry:subsystem:secret"
    KEY_ADD = "registry:key:add"
    KEY_REVOKE = "registry:key:revoke"
    CERT_ADD = "registry:certificate:add"
    CERT_REVOKE = "registry:certificate:revoke"
    SERVICE_ADD = "registry:service:add"
    SERVICE_UPDATE = "registry:service:update"
    SERVICE_REMOVE = "registry:service:remove"
    GRANT_REQUEST = "registry:grant:request"
    GRANT_APPROVE = "registry:grant:approve"
    GRANT_REJECT = "registry:grant:reject"
    GRANT_REVOKE = "registry:grant:revoke"
    QUOTA_SET = "registry:quota:set"
    QUOTA_REMOVE = "registry:quota:remove"
    CATALOGUE_IMPORT = "registry:catalogue:import"
    TOPIC_ADD = "registry:topic:add"
    SUBSCRIPTION_ADD = "registry:subscription:add"
    SUBSCRIPTION_REMOVE = "registry:subscription:remove"
    SUBSCRIPTION_REDELIVER = "registry:subscription:redeliver"
    DUPLICATE_DECIDE = "registry:duplicate:decide"
    CATALOGUE_REPORT = "registry:catalogue:report"
    UNASSERTED_CALLS_REPORT = "oversight:unasserted-calls:report"
    INCIDENT_UPDATE = "operations:incident:update"
    COMPLAINT_ANSWER = "operations:complaint:answer"
    ADMIN_TOKEN_CREATE = "security:admin-token:create"
    ADMIN_TOKEN_REVOKE = "security:admin-token:revoke"
    TOKEN_ISSUE = "security:token:issue"
    TOKEN_REFUSE = "security:token:refuse"
    CONSOLE_USER_ADD = "console:user:add"
    CONSOLE_USER_UPDATE = "console:user:update"
    CONSOLE_SIGN_IN = "security:console:sign-in"
    CONSOLE_SIGN_IN_REFUSE = "security:console:refuse"


def _dump(value: dict[str, Any] | None) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def record(
    conn: Connection,
    actor: str,
    action: Action,
    target: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    *,
    bump: bool = True,
) -> None:
    """Write one audit entry and, for registry changes, bump the change feed's version."""
    conn.execute(
        insert(audit_log).values(
            ts=now_rfc3339(),
            actor=actor,
            action=str(action),
            target=target,
            before=_dump(before),
            after=_dump(after),
        )
    )
    if bump:
        conn.execute(
            update(registry_version)
            .where(registry_version.c.id == 1)
            .values(version=registry_version.c.version + 1)
        )
        mark_changed(conn)


def entries(conn: Connection, target: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    q = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if target:
        q = q.where(audit_log.c.target == target)
    out = []
    for row in conn.execute(q).mappings():
        item = dict(row)
        item["before"] = json.loads(item["before"]) if item["before"] else None
        item["after"] = json.loads(item["after"]) if item["after"] else None
        out.append(item)
    return out


def current_version(conn: Connection) -> int:
    return int(conn.execute(select(registry_version.c.version)).scalar_one())
