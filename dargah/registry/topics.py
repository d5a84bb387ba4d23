"""Topics and subscriptions (protocol §7): a provider's life events, and who receives them.

A subscriber needs an approved grant on the topic, like on a service; grants
on topics live in the grants table with the topic id in place of a service id.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import Connection, insert, select, update

from dargah.core.clock import now_rfc3339
from dargah.core.errors import BadRequest, Conflict, NotFound
from dargah.core.identifiers import parse_subsystem_id, parse_topic_id
from dargah.core.settings import Settings
from dargah.registry import audit
from dargah.registry.audit import Action
from dargah.registry.members import get_subsystem
from dargah.registry.services import check_outbound_url, outbound_policy
from dargah.store.tables import deliveries, grants, subscriptions, topics


def add_topic(
    conn: Connection, topic_id: str, actor: str, title: str | None = None
) -> dict[str, Any]:
    tid = parse_topic_id(topic_id)
    owner = get_subsystem(conn, str(tid.subsystem))
    if owner["status"] != "active":
        raise Conflict(f"subsystem {owner['id']} is {owner['status']}", "سامانه فعال نیست")
    if conn.execute(select(topics.c.id).where(topics.c.id == topic_id)).first():
        raise Conflict(f"topic {topic_id} already exists", f"موضوع {topic_id} قبلاً ثبت شده است")
    row = {
        "id": topic_id,
        "subsystem_id": str(tid.subsystem),
        "title": title or tid.code,
        "status": "active",
        "created_at": now_rfc3339(),
    }
    conn.execute(insert(topics).values(**row))
    audit.record(conn, actor, Action.TOPIC_ADD, topic_id, None, row)
    return row


def get_topic(conn: Connection, topic_id: str) -> dict[str, Any]:
    row = conn.execute(select(topics).where(topics.c.id == topic_id)).mappings().first()
    if row is None:
        raise NotFound(f"no topic {topic_id}", f"موضوع {topic_id} یافت نشد")
    return dict(row)


def list_topics(conn: Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(select(topics).order_by(topics.c.id)).mappings()]


def add_subscription(
    conn: Connection,
    client_id: str,
    topic_id: str,
    actor: str,
    *,
    webhook: str | None = None,
    pull: bool = False,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Subscribe a client to a topic; a webhook follows the outbound address rules of the
    instance under ``settings`` (defaults when None)."""
    parse_subsystem_id(client_id)
    get_subsystem(conn, client_id)
    topic = get_topic(conn, topic_id)
    if (webhook is None) == (not pull):
        raise BadRequest(
            "a subscription is either a webhook or pulled, not both or neither",
            "اشتراک یا با وب‌هوک است یا با دریافت مستقیم",
        )
    if webhook is not None:
        check_outbound_url(
            webhook,
            outbound_policy(conn, settings),
            "the webhook",
            "نشانی وب‌هوک",
            query=True,
        )
    granted = conn.execute(
        select(grants.c.id).where(
            grants.c.client_id == client_id,
            grants.c.service_id == topic_id,
            grants.c.status == "approved",
        )
    ).first()
    if granted is None:
        raise Conflict(
            f"{client_id} has no approved grant on {topic['id']}",
            "برای این موضوع مجوز تأییدشده‌ای وجود ندارد",
        )
    row = {
        "id": str(uuid.uuid4()),
        "client_id": client_id,
        "topic_id": topic_id,
        "mode": "pull" if pull else "webhook",
        "webhook_url": webhook,
        "status": "active",
        "created_at": now_rfc3339(),
    }
    conn.execute(insert(subscriptions).values(**row))
    audit.record(conn, actor, Action.SUBSCRIPTION_ADD, f"{client_id} -> {topic_id}", None, row)
    return row


def get_subscription(conn: Connection, subscription_id: str) -> dict[str, Any]:
    row = (
        conn.execute(select(subscriptions).where(subscriptions.c.id == subscription_id))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"no subscription {subscription_id}", "اشتراک یافت نشد")
    return dict(row)


def list_subscriptions(
    conn: Connection, client_id: str | None = None, topic_id: str | None = None
) -> list[dict[str, Any]]:
    q = select(subscriptions).order_by(subscriptions.c.created_at)
    if client_id:
        q = q.where(subscriptions.c.client_id == client_id)
    if topic_id:
        q = q.where(subscriptions.c.topic_id == topic_id)
    return [dict(r) for r in conn.execute(q).mappings()]


def remove_subscription(conn: Connection, subscription_id: str, actor: str) -> dict[str, Any]:
    before = get_subscription(conn, subscription_id)
    conn.execute(
        update(subscriptions).where(subscriptions.c.id == subscription_id).values(status="removed")
    )
    after = {**before, "status": "removed"}
    audit.record(conn, actor, Action.SUBSCRIPTION_REMOVE, subscription_id, before, after)
    return after


def redeliver(conn: Connection, subscription_id: str, actor: str) -> int:
    """Put a subscription's dead-lettered deliveries back in the queue; returns how many."""
    get_subscription(conn, subscription_id)
    now = time.time()
    n = conn.execute(
        update(deliveries)
        .where(deliveries.c.subscription_id == subscription_id, deliveries.c.status == "dead")
        .values(status="pending", attempts=0, created=now, next_attempt_at=now, lease_until=None)
    ).rowcount
    audit.record(
        conn,
        actor,
        Action.SUBSCRIPTION_REDELIVER,
        subscription_id,
        None,
        {"requeued": n},
        bump=False,
    )
    return int(n)


def delivery_counts(conn: Connection, subscription_id: str) -> dict[str, int]:
    from sqlalchemy import func

    rows = conn.execute(
        select(deliveries.c.status, func.count())
        .where(deliveries.c.subscription_id == subscription_id)
        .group_by(deliveries.c.status)
    )
    return {status: int(n) for status, n in rows}
