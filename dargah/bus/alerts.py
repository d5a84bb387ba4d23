"""Sending the alerts of incidents, each once: e-mail to the outbox and an Alertmanager webhook.

An alert row (``incident_alerts``) is written by the one transaction that opened, updated,
reopened or resolved an incident. Any bus process may send it: it first **claims** the row
(a conditional update; a claim older than :data:`CLAIM_SECONDS` may be taken over, so a
process that died while sending does not lose it), queues the e-mail on its first claim,
posts the webhook, and marks the row sent. A webhook that keeps failing is given up after
:data:`MAX_ATTEMPTS`, noted on the incident's timeline.

The webhook body is the Alertmanager webhook format (version 4): one alert per bus service
of the incident, grouped by the incident's cause, ``status`` firing or resolved, with English
and Persian annotations, so that Alertmanager receivers, chat bridges and on-call tools take it
as it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, select, update

from dargah.core.clock import now_rfc3339, rfc3339
from dargah.registry import incidents
from dargah.store.db import READ_ONLY
from dargah.store.tables import incident_alerts

log = logging.getLogger("dargah.alerts")
CLAIM_SECONDS = 30
MAX_ATTEMPTS = 5
ZERO_TIME = "0001-01-01T00:00:00Z"
KIND_FA = {"opened": "گشوده شد", "updated": "به‌روز شد", "resolved": "برطرف شد"}


def _fingerprint(labels: dict[str, str]) -> str:
    text = json.dumps(labels, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def change_of(incident: dict[str, Any], kind: str, revision: int) -> str:
    """``opened``, ``updated`` (services added or reopened) or ``resolved``."""
    if kind == "resolved":
        return "resolved"
    return "opened" if revision == 0 else "updated"


def payload(
    incident: dict[str, Any], kind: str, revision: int, public_url: str, instance: str
) -> dict[str, Any]:
    """The Alertmanager webhook body for one change of an incident."""
    status = "resolved" if kind == "resolved" else "firing"
    change = change_of(incident, kind, revision)
    link = f"{public_url}/console/incident?id={incident['id']}"
    group = {"cause": incident.get("cause") or incident["service_id"]}
    common = {
        "alertname": "DargahProviderDown",
        "cause": group["cause"],
        "severity": "critical",
        "instance": instance,
        "incident": str(incident["id"]),
    }
    annotations = {
        "summary": incident["summary"],
        "summary_fa": incident.get("summary_fa") or incident["summary"],
        "change": change,
        "change_fa": KIND_FA[change],
        "services": ", ".join(incident["services"]),
    }
    ends = ZERO_TIME if status == "firing" else (incident.get("recovered_at") or now_rfc3339())
    alerts = []
    for service in incident["services"]:
        labels = {**common, "service": service, "provider": service.rsplit("/", 1)[0]}
        alerts.append(
            {
                "status": status,
                "labels": labels,
                "annotations": annotations,
                "startsAt": incident.get("started_at") or incident["opened_at"],
                "endsAt": ends,
                "generatorURL": link,
                "fingerprint": _fingerprint(labels),
            }
        )
    return {
        "version": "4",
        "groupKey": "{}:" + "{" + f'cause="{group["cause"]}"' + "}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "dargah",
        "groupLabels": group,
        "commonLabels": common,
        "commonAnnotations": annotations,
        "externalURL": public_url,
        "alerts": alerts,
    }


def email_text(
    incident: dict[str, Any], kind: str, revision: int, public_url: str
) -> tuple[str, str]:
    """Subject and body (Persian, then English) of the alert e-mail."""
    change = change_of(incident, kind, revision)
    subject = f"[GSB] {change}: {incident['summary']}"
    link = f"{public_url}/console/incident?id={incident['id']}"
    services = "\n".join(f"- {s}" for s in incident["services"])
    body = (
        f"رخداد {incident['id']} {KIND_FA[change]}.\n{incident.get('summary_fa') or ''}\n\n"
        f"Incident {incident['id']} {change}.\n{incident['summary']}\n\n{services}\n\n{link}\n"
    )
    return subject, body


class AlertSender:
    def __init__(
        self, engine: Engine, webhook: str, email: str, public_url: str, instance: str
    ) -> None:
        self.engine = engine
        self.webhook = webhook
        self.email = email
        self.public_url = public_url
        self.instance = instance

    def _claim(self) -> list[dict[str, Any]]:
        """Claim the pending alerts, oldest first; queue the e-mail of those claimed first."""
        now = datetime.now(UTC)
        stale = rfc3339(now - timedelta(seconds=CLAIM_SECONDS))
        claimed: list[dict[str, Any]] = []
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            waiting = conn.execute(
                select(incident_alerts.c.id).where(incident_alerts.c.sent_at.is_(None)).limit(1)
            ).first()
        if waiting is None:  # the usual round: no write transaction
            return claimed
        with self.engine.begin() as conn:
            pending = conn.execute(
                select(incident_alerts)
                .where(incident_alerts.c.sent_at.is_(None))
                .order_by(incident_alerts.c.id)
                .limit(50)
            ).mappings()
            for a in list(pending):
                if a["claimed_at"] is not None and a["claimed_at"] > stale:
                    continue
                took = conn.execute(
                    update(incident_alerts)
                    .where(
                        incident_alerts.c.id == a["id"],
                        incident_alerts.c.sent_at.is_(None),
                        incident_alerts.c.attempts == a["attempts"],
                    )
                    .values(claimed_at=rfc3339(now), attempts=a["attempts"] + 1)
                ).rowcount
                if took != 1:
                    continue
                incident = incidents.get_incident(conn, int(a["incident_id"]))
                if a["attempts"] == 0 and self.email:
                    subject, body = email_text(incident, a["kind"], a["revision"], self.public_url)
                    incidents.queue_message(conn, "email", self.email, subject, body)
                if not self.webhook:
                    conn.execute(
                        update(incident_alerts)
                        .where(incident_alerts.c.id == a["id"])
                        .values(sent_at=rfc3339(now), outcome="no webhook")
                    )
                    continue
                claimed.append({**dict(a), "attempts": a["attempts"] + 1, "incident": incident})
        return claimed

    async def send_pending(self) -> int:
        """Send what is pending; returns how many webhooks were posted successfully."""
        import asyncio

        claimed = await asyncio.to_thread(self._claim)
        sent = 0
        for a in claimed:
            body = payload(a["incident"], a["kind"], a["revision"], self.public_url, self.instance)
            try:
                async with httpx.AsyncClient(timeout=5) as http:
                    r = await http.post(self.webhook, json=body)
                ok = r.status_code < 300
                outcome = f"alert webhook answered {r.status_code}"
            except httpx.HTTPError as exc:
                ok = False
                outcome = f"alert webhook failed: {type(exc).__name__}"
            sent += ok
            await asyncio.to_thread(self._done, a, ok, outcome)
        return sent

    def _done(self, a: dict[str, Any], ok: bool, outcome: str) -> None:
        final = ok or a["attempts"] >= MAX_ATTEMPTS
        with self.engine.begin() as conn:
            conn.execute(
                update(incident_alerts)
                .where(incident_alerts.c.id == a["id"])
                .values(outcome=outcome, sent_at=now_rfc3339() if final else None)
            )
            if final:
                change = change_of(a["incident"], a["kind"], a["revision"])
                fa = "فرستاده شد" if ok else "پس از چند بار تلاش فرستاده نشد"
                incidents.event(
                    conn,
                    int(a["incident_id"]),
                    "monitor",
                    "alert",
                    f"هشدار «{KIND_FA[change]}» {fa} ({change}: {outcome})",
                )
