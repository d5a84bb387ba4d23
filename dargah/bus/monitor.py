"""The monitor: opens an incident when a service goes down or degraded, and raises the alarm.

It runs in every bus process after each round of health probes; the registry
lets only one process open a given incident (see :mod:`dargah.registry.incidents`),
and only that one sends the alerts: a JSON POST to the alert webhook and an
e-mail to the outbox.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from sqlalchemy import Engine

from dargah.bus.health import HealthChecker
from dargah.bus.status import service_status
from dargah.core.background import Background
from dargah.registry import incidents

log = logging.getLogger("dargah.monitor")
WINDOW_MINUTES = 2


class Monitor(Background):
    def __init__(
        self,
        engine: Engine,
        health: HealthChecker,
        interval: float,
        webhook: str = "",
        email: str = "",
    ) -> None:
        self.engine = engine
        self.health = health
        self.interval = interval
        self.webhook = webhook
        self.email = email

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                opened = await asyncio.to_thread(self.check)
                for incident in opened:
                    await self.alert(incident)
            except Exception:
                log.exception("the monitor's round failed")

    def check(self) -> list[dict[str, Any]]:
        """Open incidents for failing services; note recoveries. Returns the incidents opened."""
        opened = []
        with self.engine.begin() as conn:
            for s in service_status(conn, WINDOW_MINUTES, self.health.results):
                current = incidents.open_for(conn, s["service"])
                if s["state"] in ("down", "degraded") and current is None:
                    summary = _summary(s)
                    row = incidents.open_incident(
                        conn, s["service"], s["service"].rsplit("/", 1)[0], s["state"], summary
                    )
                    if row is not None:
                        if self.email:
                            incidents.queue_message(
                                conn,
                                "email",
                                self.email,
                                f"[GSB] {s['state']}: {s['service']}",
                                summary,
                            )
                        opened.append(row)
                elif current is not None:
                    incidents.note_state(conn, current, s["state"] == "up")
        return opened

    async def alert(self, incident: dict[str, Any]) -> None:
        if not self.webhook:
            return
        payload = {
            k: incident[k] for k in ("id", "service_id", "provider", "kind", "opened_at", "summary")
        }
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                r = await http.post(self.webhook, json={"incident": payload})
            outcome = f"alert webhook answered {r.status_code}"
        except httpx.HTTPError as exc:
            outcome = f"alert webhook failed: {exc}"
        await asyncio.to_thread(self._note, int(incident["id"]), outcome)

    def _note(self, incident_id: int, text: str) -> None:
        with self.engine.begin() as conn:
            incidents.event(conn, incident_id, "monitor", "alert", text)


def _summary(s: dict[str, Any]) -> str:
    probe = s.get("probe") or {}
    parts = [f"{s['service']} is {s['state']}"]
    if s["forwarded"]:
        newest = "the newest " if s["sampled"] < s["calls"] else ""
        parts.append(
            f"{s['failed']} of {newest}{s['forwarded']} calls failed in the last "
            f"{WINDOW_MINUTES} minutes, p95 {s['latency_ms']['p95']} ms"
        )
    if probe and not probe.get("ok"):
        parts.append(f"health probe of {probe.get('endpoint')}: {probe.get('error')}")
    return "; ".join(parts)
