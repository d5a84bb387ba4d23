"""The registry's change feed: a version every process polls, and, with Redis, a nudge.

Every registry change bumps ``registry_version`` in the same transaction (see
:func:`dargah.registry.audit.record`); bus processes compare it every
``DARGAH_REFRESH_SECONDS`` and reload their snapshot. With ``DARGAH_REDIS_URL`` set, the
process that commits a change also publishes the instance's channel, and every bus process
subscribed to it reloads at once instead of at its next poll. The nudge only brings the
reload forward: if Redis is away, polling still carries every change.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Connection, Engine, event

log = logging.getLogger("dargah.registry")
CHANGED = "dargah.registry_changed"


def channel(instance: str) -> str:
    return f"dargah:{instance}:registry"


def mark_changed(conn: Connection) -> None:
    """Note that this transaction changes the registry (published after it commits)."""
    conn.info[CHANGED] = True


def install_notifier(engine: Engine, redis_url: str, instance: str) -> None:
    """Publish ``channel(instance)`` whenever a transaction that changed the registry commits."""
    import redis

    client: Any = redis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)
    name = channel(instance)

    def after_commit(conn: Connection) -> None:
        if conn.info.pop(CHANGED, False):
            try:
                client.publish(name, "changed")
            except Exception as exc:  # polling still carries the change
                log.warning("could not announce a registry change on Redis: %s", exc)

    def after_rollback(conn: Connection) -> None:
        conn.info.pop(CHANGED, None)

    event.listen(engine, "commit", after_commit)
    event.listen(engine, "rollback", after_rollback)
