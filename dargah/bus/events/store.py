"""The events' database work: storing an event with its deliveries, claiming due deliveries.

Every function here is blocking and runs in a worker thread. A delivery is
claimed with a lease, so that any number of bus processes share the work and
a delivery claimed by a process that died is taken up again when its lease ends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from dargah.core.clock import now_rfc3339
from dargah.store.db import READ_ONLY
from dargah.store.tables import deliveries, events, subscriptions, topics

MAX_BACKOFF = 30.0


@dataclass(frozen=True, slots=True)
class Due:
    delivery_id: int
    attempts: int
    created: float
    subscription_id: str
    subscriber: str
    webhook_url: str
    topic_id: str
    owner: str
    event_id: str
    body: str
    subscription_active: bool = True


def publish(
    engine: Engine, topic_id: str, event_id: str, body: str, publisher: str
) -> tuple[int, bool]:
    """Store the event and a pending delivery per active webhook subscription, in one transaction.

    Returns (event seq, True) for a new event; the same CloudEvents id published
    again on the topic is accepted without a second delivery: (seq, False).
    """
    now = time.time()
    try:
        with engine.begin() as conn:
            seq = conn.execute(
                insert(events).values(
                    topic_id=topic_id,
                    event_id=event_id,
                    body=body,
                    publisher=publisher,
                    published_at=now_rfc3339(),
                )
            ).inserted_primary_key[0]
            subs = (
                conn.execute(
                    select(subscriptions.c.id).where(
                        subscriptions.c.topic_id == topic_id,
                        subscriptions.c.status == "active",
                        subscriptions.c.mode == "webhook",
                    )
                )
                .scalars()
                .all()
            )
            if subs:
                conn.execute(
                    insert(deliveries),
                    [
                        {
                            "subscription_id": sid,
                            "event_seq": seq,
                            "status": "pending",
                            "attempts": 0,
                            "created": now,
                            "next_attempt_at": now,
                            "lease_until": None,
                        }
                        for sid in subs
                    ],
                )
            return int(seq), True
    except IntegrityError:
        with engine.connect().execution_options(**READ_ONLY) as conn:
            seq = conn.execute(
                select(events.c.seq).where(
                    events.c.topic_id == topic_id, events.c.event_id == event_id
                )
            ).scalar_one()
        return int(seq), False


def claim(engine: Engine, now: float, lease: float, limit: int = 32) -> list[Due]:
    """Take up to ``limit`` due deliveries for ``lease`` seconds."""
    free = or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now)
    with engine.begin() as conn:
        ids = (
            conn.execute(
                select(deliveries.c.id)
                .where(deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now, free)
                .order_by(deliveries.c.next_attempt_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            .scalars()
            .all()
        )
        if not ids:
            return []
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id.in_(ids))
            .values(lease_until=now + lease, attempts=deliveries.c.attempts + 1)
        )
        rows = conn.execute(
            select(
                deliveries.c.id,
                deliveries.c.attempts,
                deliveries.c.created,
                subscriptions.c.id.label("sub"),
                subscriptions.c.client_id,
                subscriptions.c.webhook_url,
                subscriptions.c.status.label("sub_status"),
                topics.c.id.label("topic"),
                topics.c.subsystem_id,
                events.c.event_id,
                events.c.body,
            )
            .select_from(
                deliveries.join(subscriptions, subscriptions.c.id == deliveries.c.subscription_id)
                .join(events, events.c.seq == deliveries.c.event_seq)
                .join(topics, topics.c.id == subscriptions.c.topic_id)
            )
            .where(deliveries.c.id.in_(ids))
        ).all()
    return [
        Due(
            r.id,
            r.attempts,
            r.created,
            r.sub,
            r.client_id,
            r.webhook_url or "",
            r.topic,
            r.subsystem_id,
            r.event_id,
            r.body,
            r.sub_status == "active",
        )
        for r in rows
    ]


def delivered(engine: Engine, delivery_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == delivery_id)
            .values(
                status="delivered", delivered_at=now_rfc3339(), lease_until=None, last_error=None
            )
        )


def backoff_after(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: 1, 2, 4, … up to 30."""
    return min(MAX_BACKOFF, 2.0 ** max(0, attempts - 1))


def failed(engine: Engine, due: Due, error: str, now: float, dead_after: float) -> str:
    """Schedule the next attempt (back-off 1 s doubling to 30 s) or dead-letter it; its status."""
    status = "dead" if now - due.created >= dead_after else "pending"
    backoff = backoff_after(due.attempts)
    with engine.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == due.delivery_id)
            .values(
                status=status,
                next_attempt_at=now + backoff,
                lease_until=None,
                last_error=error[:1000],
            )
        )
    return status


def dead_letter(engine: Engine, due: Due, reason: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == due.delivery_id)
            .values(status="dead", lease_until=None, last_error=reason)
        )


def events_after(
    engine: Engine, subscription_id: str, after: int | None, limit: int
) -> tuple[dict[str, Any] | None, list[tuple[int, str]]]:
    """(the subscription, [(seq, body)]) of its topic's events after ``after``.

    With no cursor, a pull subscription starts with the events published since it was made.
    """
    with engine.connect().execution_options(**READ_ONLY) as conn:
        sub = (
            conn.execute(select(subscriptions).where(subscriptions.c.id == subscription_id))
            .mappings()
            .first()
        )
        if sub is None:
            return None, []
        cond = [events.c.topic_id == sub["topic_id"]]
        if after is not None:
            cond.append(events.c.seq > after)
        else:
            cond.append(events.c.published_at >= sub["created_at"])
        rows = conn.execute(
            select(events.c.seq, events.c.body)
            .where(and_(*cond))
            .order_by(events.c.seq)
            .limit(limit)
        ).all()
        return dict(sub), [(int(r.seq), r.body) for r in rows]
