"""The daily snapshot, kept without anyone running a command.

Every bus process checks, a few seconds after it starts and then every hour, whether today's
(Tehran's day) national snapshot exists, and takes it when it does not. Taking it twice the
same day replaces that day's rows, so several processes doing it at once are harmless;
``dargah oversight snapshot`` still takes one on demand.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from sqlalchemy import Engine, select

from dargah.core.background import Background
from dargah.core.jalali import TEHRAN
from dargah.oversight.overview import NATION
from dargah.oversight.snapshots import take_snapshot
from dargah.store.people_tables import oversight_snapshots

log = logging.getLogger("dargah.oversight")
FIRST_CHECK_SECONDS = 5.0
CHECK_EVERY_SECONDS = 3600.0


def ensure_today(engine: Engine, now: datetime | None = None) -> bool:
    """Take today's snapshot unless it exists; True when one was taken."""
    now = now or datetime.now(UTC)
    day = now.astimezone(TEHRAN).date().isoformat()
    with engine.connect() as conn:
        exists = conn.execute(
            select(oversight_snapshots.c.id).where(
                oversight_snapshots.c.day == day, oversight_snapshots.c.scope == NATION
            )
        ).first()
    if exists is not None:
        return False
    take_snapshot(engine, now)
    return True


class DailySnapshots(Background):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def _run(self) -> None:
        await asyncio.sleep(FIRST_CHECK_SECONDS)
        while True:
            try:
                if await asyncio.to_thread(ensure_today, self.engine):
                    log.info("took today's oversight snapshot")
            except Exception as exc:  # another process's snapshot, or the database away
                log.warning("could not take today's oversight snapshot: %s", exc)
            await asyncio.sleep(CHECK_EVERY_SECONDS)
