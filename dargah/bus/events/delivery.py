"""Webhook delivery: at least once, retried with back-off, dead-lettered after the retry window.

Every bus process runs one worker. It claims due deliveries with a lease
(several processes share the work), POSTs each event in structured mode with
a ``GSB-Assertion`` (``sub`` the topic owner, ``aud`` the subscriber, ``rid``
the delivery id), records the attempt in the message log with the subscriber
as client and the topic as service, and marks it delivered on a 2xx answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from urllib.parse import urlsplit

from dargah.bus.events import store
from dargah.bus.log.writer import LogUnavailable
from dargah.bus.runtime import BusRuntime
from dargah.bus.upstream import UpstreamError
from dargah.core.background import Background
from dargah.core.clock import now_rfc3339
from dargah.core.errors import PROBLEMS

log = logging.getLogger("dargah.events")
IDLE_WAIT = 1.0
MAX_RESPONSE = 64 * 1024
CLAIM_BATCH = 32
RETRY_SLACK = 0.01
MAX_IN_FLIGHT = 128


class DeliveryWorker(Background):
    def __init__(self, rt: BusRuntime, wake: asyncio.Event) -> None:
        self.rt = rt
        self.wake = wake
        self.delivered = 0
        self.failed = 0
        self._in_flight: set[asyncio.Task[None]] = set()
        self._full = False
        self._next_retry: float | None = None
        """When the earliest retry this process scheduled is due (so it is not left to polling)."""

    async def stop(self) -> None:
        await super().stop()
        # Cut short, not done: their leases run out and they are tried again.
        for task in list(self._in_flight):
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def _run(self) -> None:
        # Each delivery runs as its own task, so that a slow or unreachable webhook holds up
        # only its own deliveries, never those of other subscribers.
        lease = self.rt.settings.event_delivery_timeout + 5
        while True:
            self.wake.clear()  # before claiming: a publish from now on wakes the next round
            if self._next_retry is not None and self._next_retry <= time.time():
                self._next_retry = None  # due: this round's claim takes it
            # Claim whole batches: a claim is a write transaction, not worth making per delivery.
            self._full = MAX_IN_FLIGHT - len(self._in_flight) < CLAIM_BATCH
            due: list[store.Due] = []
            if not self._full:
                try:
                    due = await asyncio.to_thread(
                        store.claim, self.rt.engine, time.time(), lease, CLAIM_BATCH
                    )
                except Exception as exc:  # the database is away: try again shortly
                    log.warning("could not claim event deliveries: %s", exc)
            for d in due:
                task = asyncio.create_task(self._deliver(d))
                self._in_flight.add(task)
                task.add_done_callback(self._done)
            if len(due) < CLAIM_BATCH:
                wait = IDLE_WAIT
                if self._next_retry is not None:
                    wait = min(wait, max(0.0, self._next_retry - time.time()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), wait)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # Not marked delivered: its lease runs out and it is tried again.
            log.error("event delivery failed unexpectedly", exc_info=exc)
        if self._full and MAX_IN_FLIGHT - len(self._in_flight) >= CLAIM_BATCH:
            self._full = False
            self.wake.set()

    async def _deliver(self, due: store.Due) -> None:
        rt = self.rt
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        body = due.body.encode()
        rec = {
            "ts": now_rfc3339(),
            "request_id": request_id,
            "client": due.subscriber,
            "service": due.topic_id,
            "method": "POST",
            "path": f"/deliveries/{due.delivery_id}",
            "query_hash": None,
            "purpose": None,
            "subject_ref": None,
            "user": None,
            "request_hash": hashlib.sha256(body).hexdigest(),
            "request_bytes": len(body),
        }
        if not due.subscription_active:
            await asyncio.to_thread(store.dead_letter, rt.engine, due, "the subscription is gone")
            return
        if (due.subscriber, due.topic_id) not in rt.snapshot.grants:
            await asyncio.to_thread(
                store.dead_letter, rt.engine, due, "the subscriber's grant is gone"
            )
            return
        status, outcome, error, answer = await self._post(due, body, request_id)
        rec.update(
            status=status,
            outcome=outcome,
            response_hash=hashlib.sha256(answer).hexdigest(),
            response_bytes=len(answer),
            duration_us=int((time.perf_counter() - started) * 1_000_000),
        )
        try:
            await rt.writer.append(rec)
        except LogUnavailable:
            # Not recorded, so not done: the lease runs out and the delivery is tried again.
            return
        if outcome == "ok":
            self.delivered += 1
            await asyncio.to_thread(store.delivered, rt.engine, due.delivery_id)
        else:
            self.failed += 1
            now = time.time()
            state = await asyncio.to_thread(
                store.failed, rt.engine, due, error, now, rt.settings.event_dead_after_seconds
            )
            if state == "pending":
                retry_at = now + store.backoff_after(due.attempts) + RETRY_SLACK
                if self._next_retry is None or retry_at < self._next_retry:
                    self._next_retry = retry_at
                    self.wake.set()  # the worker waits until then, not a whole polling round

    async def _post(
        self, due: store.Due, body: bytes, request_id: str
    ) -> tuple[int, str, str, bytes]:
        rt = self.rt
        url = urlsplit(due.webhook_url)
        tls = url.scheme == "https"
        port = url.port or (443 if tls else 80)
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        iat = int(time.time())
        assertion = rt.assertion_signer.sign(
            {
                "iss": rt.public_url,
                "sub": due.owner,
                "aud": due.subscriber,
                "rid": str(due.delivery_id),
                "purpose": None,
                "subject_present": False,
                "iat": iat,
                "exp": iat + rt.settings.assertion_ttl,
            }
        )
        headers = [
            (b"content-type", b"application/cloudevents+json"),
            (b"gsb-client", due.owner.encode()),
            (b"gsb-service", due.topic_id.encode()),
            (b"gsb-request-id", request_id.encode()),
            (b"gsb-delivery-id", str(due.delivery_id).encode()),
            (b"gsb-assertion", assertion.encode()),
        ]
        pool = rt.pools.get(f"webhook:{due.subscriber}", url.hostname or "", port, tls)
        try:
            resp = await pool.request(
                "POST",
                target.encode("latin-1"),
                headers,
                body,
                MAX_RESPONSE,
                rt.settings.event_delivery_timeout,
            )
        except UpstreamError as exc:
            return PROBLEMS[exc.code].status, exc.code, exc.detail, b""
        if 200 <= resp.status < 300:
            return resp.status, "ok", "", resp.body
        return resp.status, "provider-error", f"the webhook answered {resp.status}", resp.body
