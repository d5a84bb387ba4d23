"""Following applications up: asking agencies for news, and telling citizens of it unasked.

:class:`Refresher` asks over the bus the ``submit_to`` services that hold an open application
of one citizen, and those of agencies with a proactive service, for the citizen's
applications; new ones and changed statuses go into the citizen's file and are told to the
citizen (:mod:`dargah.portal.notices`). It runs when the citizen opens their pages, and in
:class:`Watcher`'s rounds, every ``DARGAH_PORTAL_WATCH_SECONDS``, for every citizen with an
open application or a live session, so that news reaches them by SMS while they are away.
Each round also reads the open incidents of the bus's monitor and tells the citizens with an
open application on a public service whose source or ``submit_to`` service is failing.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy import select

from dargah.portal import notices, records
from dargah.portal.context import PortalContext
from dargah.portal.gateway import APPLICATION_PURPOSE, BusUnavailable
from dargah.registry import incidents
from dargah.store.db import READ_ONLY
from dargah.store.people_tables import applications, web_sessions

log = logging.getLogger("dargah.portal")
REFRESH_SECONDS = 3.0
CITIZENS_PER_ROUND = 500


class Refresher:
    """Asks agencies for news of one citizen's applications, at most every 3 s per citizen."""

    def __init__(self, ctx: PortalContext) -> None:
        self.ctx = ctx
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, national_code: str, proactive: bool = True) -> None:
        """Ask for news of ``national_code``'s open applications and, with ``proactive``, of
        those agencies may have opened for them by themselves."""
        with self._lock:
            if time.monotonic() - self._last.get(national_code, 0.0) < REFRESH_SECONDS:
                return
            if len(self._last) > 50_000:
                self._last.clear()
            self._last[national_code] = time.monotonic()
        ctx = self.ctx
        if not ctx.bus.available:
            return
        with ctx.engine.connect() as conn:
            mine = records.applications_of(conn, national_code)
            mobile = notices.mobile_of(conn, national_code)
        known = {(a["submit_to"], a["agency_ref"]) for a in mine}
        acceptors = self._acceptors()
        # Ask only the agencies that hold an open application of this citizen, and those with
        # a proactive service (which may have opened one by themselves): not every agency.
        asked = {a["submit_to"] for a in mine if a["submit_to"] and a["completed_at"] is None}
        if proactive:
            asked |= {
                sid
                for sid, cards in acceptors.items()
                if any(c.get("proactive_topic_ids") for c in cards)
            }
        for submit_to in sorted(asked):
            cards = acceptors.get(submit_to, [])
            src = ctx.sources.service(submit_to)
            if src is None or src.person_path is None:
                continue
            try:
                answer = ctx.bus.call(
                    submit_to,
                    src.person_path.replace("{national_code}", national_code),
                    purpose=APPLICATION_PURPOSE,
                    subject=national_code,
                )
            except BusUnavailable:
                continue
            body = answer.body if isinstance(answer.body, dict) else {}
            for item in body.get("applications") or []:
                if isinstance(item, dict):
                    self._merge(national_code, submit_to, cards, item, mine, known, mobile)

    def _acceptors(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for card in self.ctx.catalogue.get().services.values():
            if card.get("submit_to"):
                out.setdefault(card["submit_to"], []).append(card)
        return out

    def _merge(
        self,
        national_code: str,
        submit_to: str,
        cards: list[dict[str, Any]],
        item: dict[str, Any],
        mine: list[dict[str, Any]],
        known: set[tuple[Any, Any]],
        mobile: str | None,
    ) -> None:
        ref = str(item.get("id") or "")
        status = str(item.get("status") or "received")
        status_fa = str(item.get("status_fa") or records.STATUS_FA.get(status, status))
        engine = self.ctx.engine
        if (submit_to, ref) not in known:
            sid = str(item.get("service_id") or "")
            card = next((c for c in cards if c["service_id"] == sid), None)
            if card is None:
                return
            proactive = item.get("channel") == "proactive"
            with engine.begin() as conn:
                app = records.create_application(
                    conn,
                    national_code=national_code,
                    service_id=sid,
                    submit_to=submit_to,
                    agency_ref=ref,
                    channel="proactive" if proactive else "agency",
                    status=status,
                    status_fa=status_fa,
                    data=item.get("details") or {},
                    created_at=item.get("submitted_at"),
                    note="این خدمت را دستگاه بدون درخواست شما برایتان آغاز کرد."
                    if proactive
                    else None,
                )
            known.add((submit_to, ref))
            notices.opened_for_you(
                engine,
                national_code,
                app["tracking_code"],
                card.get("title_fa") or card.get("title_en") or sid,
                card.get("agency_name") or "دستگاه",
                mobile,
            )
            return
        for app in mine:
            if (app["submit_to"], app["agency_ref"]) == (submit_to, ref):
                with engine.begin() as conn:
                    changed = records.set_status(conn, app, status, status_fa)
                if changed:
                    app["status"] = status
                    notices.status_changed(
                        engine, national_code, app["tracking_code"], status, status_fa, mobile
                    )


class Watcher:
    """A background round every ``seconds``: news for citizens with an open application or a
    live session, and open incidents told to the citizens they hold up."""

    def __init__(self, ctx: PortalContext, refresh: Refresher, seconds: float) -> None:
        self.ctx = ctx
        self.refresh = refresh
        self.seconds = seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.seconds <= 0 or not self.ctx.bus.available or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="portal-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                self.round()
            except Exception:  # the next round tries again; pages never wait for a round
                log.exception("the portal's watch round failed")

    def citizens(self) -> dict[str, bool]:
        """Citizens with an open application, and those signed in now (bounded): whether to
        ask for proactive news too (only for the signed-in ones, so that nobody's "who used
        my data" fills with the portal's polling)."""
        now = records.now_iso()
        with self.ctx.engine.connect().execution_options(**READ_ONLY) as conn:
            open_apps = conn.execute(
                select(applications.c.national_code)
                .where(applications.c.completed_at.is_(None))
                .distinct()
                .limit(CITIZENS_PER_ROUND)
            ).scalars()
            live = conn.execute(
                select(web_sessions.c.principal)
                .where(web_sessions.c.realm == "portal", web_sessions.c.expires_at > now)
                .distinct()
                .limit(CITIZENS_PER_ROUND)
            ).scalars()
            found = dict.fromkeys(open_apps, False) | dict.fromkeys(live, True)
        return dict(list(found.items())[: 2 * CITIZENS_PER_ROUND])

    def round(self) -> None:
        for national_code, proactive in self.citizens().items():
            if self._stop.is_set():
                return
            self.refresh(national_code, proactive)
        self.tell_incidents()

    def tell_incidents(self) -> int:
        """Open incidents (the bus's monitor records them) told to the citizens they hold up."""
        with self.ctx.engine.connect().execution_options(**READ_ONLY) as conn:
            open_now = incidents.list_incidents(conn, "open")
        services = self.ctx.catalogue.get().services
        told = 0
        for incident in open_now:
            affected = {
                sid
                for bus_service in incidents.services_of(incident)
                for sid in notices.affected_by(services, bus_service)
            }
            told += notices.source_failing(
                self.ctx.engine, services, int(incident["id"]), sorted(affected)
            )
        return told
