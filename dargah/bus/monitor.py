"""The monitor: opens one incident per failing cause once the failure persists, and resolves it.

It runs in every bus process. Each round (after a new round of health probes):

1. rolls the message log up into the objectives' 5-minute buckets (:func:`slo.roll_up`);
2. groups the active bus services by **provider host** (scheme, host and port of their
   base URL): the cause an incident is opened for. A service of a host fails in a round when
   its provider's health probe failed, or when it burns its availability budget faster than
   14.4× over both the last hour and the last 5 minutes (:mod:`dargah.bus.slo`);
3. opens the host's incident when its last ``open_probes`` rounds all failed (listing every
   service that failed), adds services that fail later to it, and resolves it when its last
   ``resolve_probes`` rounds were all good. A cause failing again within the reopen window
   reopens the same incident.

**Starting opens nothing**: a host that this process has not yet seen answer gets no
incident before ``grace`` seconds after the start (a bus, a node or the sandbox starting in
any order). **Several processes**: each keeps its own rounds; the database decides (one open
incident per cause by a unique key; every other change conditional, see
:mod:`dargah.registry.incidents`), and alerts are sent once by whichever process claims them
(:mod:`dargah.bus.alerts`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine

from dargah.bus import slo
from dargah.bus.alerts import AlertSender
from dargah.bus.causes import History
from dargah.bus.health import HealthChecker
from dargah.core.background import Background
from dargah.core.clock import rfc3339
from dargah.core.persian import to_persian_digits
from dargah.registry import incidents
from dargah.registry.snapshot import ServiceEntry, Snapshot
from dargah.store.db import READ_ONLY

log = logging.getLogger("dargah.monitor")


@dataclass(frozen=True, slots=True)
class Rules:
    open_probes: int = 3
    resolve_probes: int = 3
    reopen_seconds: float = 3600.0
    grace_seconds: float = 120.0


def _epoch(ts: str | None) -> float:
    if not ts:
        return 0.0
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def host_of(svc: ServiceEntry) -> str:
    return f"host:{svc.scheme}://{svc.host}:{svc.port}"


def summaries(
    cause: str, services: list[str], probe_errors: list[str], burning: bool
) -> tuple[str, str]:
    """The incident's summary in English and in Persian."""
    where = cause.removeprefix("host:")
    n = len(services)
    why = "; ".join(sorted(set(probe_errors))) or "failing calls burn the error budget"
    providers = ", ".join(sorted({s.rsplit("/", 1)[0] for s in services}))
    en = f"Provider host {where} is down: {n} bus service(s) of {providers} fail ({why})"
    if probe_errors:
        fa_why = "به آزمون سلامت پاسخ نمی‌دهد"
    else:
        fa_why = "فراخوانی‌ها بیش از حد مجاز خطا می‌دهند"
    if burning and probe_errors:
        fa_why += " و فراخوانی‌ها خطا می‌دهند"
    fa = (
        f"میزبان ارائه‌دهنده {where} {fa_why}؛ "
        f"{to_persian_digits(str(n))} خدمت گذرگاه از کار افتاده است ({providers})."
    )
    return en, fa


class Monitor(Background):
    def __init__(
        self,
        engine: Engine,
        health: HealthChecker,
        snapshot: Callable[[], Snapshot],
        interval: float,
        rules: Rules,
        defaults: slo.Objective,
        sender: AlertSender,
    ) -> None:
        self.engine = engine
        self.health = health
        self.snapshot = snapshot
        self.interval = interval
        self.rules = rules
        self.defaults = defaults
        self.sender = sender
        self.started = time.time()
        self.history: dict[str, History] = {}
        self._last_probe: dict[str, float] = {}

    async def _run(self) -> None:
        self.started = time.time()
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(self.check)
            except Exception:
                log.exception("the monitor's round failed")
            try:
                await self.sender.send_pending()
            except Exception:
                log.exception("sending alerts failed")

    def roll_up(self) -> None:
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            if not slo.behind(conn):
                return  # nothing new: no write transaction
        for _ in range(4):  # a few batches per round at most: a round stays bounded
            with self.engine.begin() as conn:
                n = slo.roll_up(conn, self.defaults)
                if n == -1:
                    conn.rollback()
                    return
            if n < slo.ROLL_UP_BATCH:
                return

    def burning(self, now: float) -> set[str]:
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            recent = slo.buckets_since(conn, now - slo.LONG_WINDOW)
            objs = slo.objectives(conn, self.defaults)
        return {
            sid
            for sid, buckets in recent.items()
            if slo.report(buckets, objs.get(sid, self.defaults), now)["availability"]["burning"]
        }

    def check(self, now: float | None = None) -> None:
        """One round: sample every provider host, then open, update or resolve incidents."""
        now = time.time() if now is None else now
        try:
            self.roll_up()
        except Exception:
            log.exception("rolling the message log up for the objectives failed")
        burning = self.burning(now)
        hosts: dict[str, list[ServiceEntry]] = {}
        for svc in self.snapshot().services.values():
            if svc.active:
                hosts.setdefault(host_of(svc), []).append(svc)
        probes = self.health.by_endpoint
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            open_causes = {i["cause"] for i in incidents.list_incidents(conn, "open")}
        for cause, svcs in sorted(hosts.items()):
            found = [probes.get(f"{s.host}:{s.port}") for s in svcs]
            known = [p for p in found if p is not None]
            if not known:
                continue  # not probed yet
            newest = max(p.checked_at for p in known)
            if self._last_probe.get(cause) == newest:
                continue  # no new probe since the last round: nothing new to count
            self._last_probe[cause] = newest
            down = {s.id for s, p in zip(svcs, found, strict=True) if p is not None and not p.ok}
            hot = {s.id for s in svcs} & burning
            h = self.history.setdefault(cause, History())
            h.add(now, frozenset(down | hot), reachable=any(p.ok for p in known))
            # Most rounds change nothing: only then take a write transaction.
            if h.samples[-1].failing:
                if not h.persists(self.rules.open_probes):
                    continue
            elif cause not in open_causes or not h.sustained(self.rules.resolve_probes):
                continue
            errors = [f"{p.endpoint}: {p.error}" for p in known if not p.ok]
            self._decide(cause, svcs, h, now, errors, bool(hot))

    def _decide(
        self,
        cause: str,
        svcs: list[ServiceEntry],
        h: History,
        now: float,
        errors: list[str],
        burning: bool,
    ) -> None:
        r = self.rules
        with self.engine.begin() as conn:
            current = incidents.open_for_cause(conn, cause)
            if current is None:
                if not h.seen_up and now - self.started < r.grace_seconds:
                    return  # starting: the host has not answered yet
                latest = incidents.latest_for_cause(conn, cause)
                since = _epoch(latest["resolved_at"]) if latest else 0.0
                if not h.persists(r.open_probes, since):
                    return
                failing = sorted(h.failing_services(since))
                started = h.started(since) or now
                en, fa = summaries(cause, failing, errors, burning)
                providers = ", ".join(sorted({s.provider for s in svcs if s.id in failing}))
                opened = incidents.open_cause(
                    conn,
                    cause,
                    providers,
                    failing,
                    rfc3339(_at(started)),
                    en,
                    fa,
                    r.reopen_seconds,
                )
                if opened is not None:
                    log.warning("incident %s opened: %s", opened["id"], en)
                return
            since = _epoch(current["failing_since"])
            if h.sustained(r.resolve_probes, since):
                back = h.recovered(since) or now
                if incidents.recover(conn, current, _at(back)):
                    log.warning("incident %s resolved by itself", current["id"])
                return
            listed = set(incidents.services_of(current))
            newest = h.samples[-1].failing if h.samples else frozenset()
            more = sorted(newest - listed)
            if more and h.persists(r.open_probes, since):
                everyone = sorted(listed | set(more))
                en, fa = summaries(cause, everyone, errors, burning)
                incidents.add_services(conn, current, more, en, fa)
