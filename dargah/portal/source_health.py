"""Which bus services are down now, for the notice on a public service's page.

Read from the instance's own incidents (what the public status page shows too), at most
every :data:`REFRESH_SECONDS`; the portal never probes or calls agencies for it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy import Engine

from dargah.registry import incidents
from dargah.registry.incident_impact import down_sources
from dargah.store.db import READ_ONLY

log = logging.getLogger("dargah.portal")
REFRESH_SECONDS = 5.0


class SourceHealth:
    def __init__(self, engine: Engine, refresh: float = REFRESH_SECONDS) -> None:
        self.engine = engine
        self.refresh = refresh
        self._lock = threading.Lock()
        self._at = -1e9
        self._open: list[dict[str, Any]] = []

    def open_incidents(self) -> list[dict[str, Any]]:
        with self._lock:
            if time.monotonic() - self._at >= self.refresh:
                try:
                    with self.engine.connect().execution_options(**READ_ONLY) as conn:
                        self._open = incidents.list_incidents(conn, "open")
                except Exception:  # the page is shown without the notice
                    log.exception("could not read the open incidents")
                self._at = time.monotonic()
            return self._open

    def notice(self, card: dict[str, Any]) -> dict[str, Any] | None:
        """What of this card is down (``sources``, ``submission``), or None."""
        return down_sources(
            self.open_incidents(), card.get("data_source_ids", []), card.get("submit_to")
        )
