"""Shipping the message log and the events to NATS JetStream (``DARGAH_NATS_URL``).

Two streams per instance, named from ``DARGAH_NATS_STREAM`` (default ``DARGAH_{INSTANCE}``):

- ``{name}_LOG``: every message-log record as committed (the same JSON fields as the table,
  chain hashes included), each chain in ``seq`` order, so that a SIEM or an archive elsewhere
  can follow the log and check its chains: the unnamed chain's records on subject
  ``{subject}.log``, a named chain's on ``{subject}.log.{chain}`` (``.`` in the chain as ``_``);
- ``{name}_EVENTS`` on subjects ``{subject}.events.{topic}``: every published event (the
  CloudEvents JSON), for agencies' own consumers and replays.

The database stays the source of truth: a shipper reads what is committed and publishes it,
each message with ``Nats-Msg-Id`` set to the record's log id (``log-{seq}``, or
``log-{chain}:{seq}`` in a named chain) or the event's id, so that JetStream drops a duplicate
when several bus processes ship the same record, or a process ships it again after a crash.
Each bus process ships the chain it writes (the processes sharing the unnamed chain all ship
it), so shipping work does not grow with the number of nodes. Where a shipper stands is read
back from the stream itself (the last message on its chain's subject, its ``Dargah-Seq``
header) when it starts: nothing is lost while NATS is away, it is shipped when NATS is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import Engine, select

from dargah.bus.log.chain import log_id
from dargah.core.background import Background
from dargah.store.tables import events, message_log

log = logging.getLogger("dargah.stream")
BATCH = 500
IDLE_SECONDS = 0.5
RETRY_SECONDS = 2.0


def names(instance: str, configured: str) -> tuple[str, str]:
    """(stream name prefix, subject prefix), e.g. ``("DARGAH_DEV", "dargah.dev")``."""
    base = configured or f"DARGAH_{instance}"
    base = re.sub(r"[^A-Za-z0-9_-]", "_", base)
    return base, base.lower().replace("_", ".")


def _safe(url: str) -> str:
    """A URL without the user and password it may carry, for logs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    return urlunsplit(
        parts._replace(netloc=f"***@{host}:{parts.port}" if parts.port else f"***@{host}")
    )


def log_subject(subject: str, chain: str) -> str:
    """The subject of a chain's records: ``{subject}.log`` or ``{subject}.log.{chain}``."""
    return f"{subject}.log.{chain.replace('.', '_')}" if chain else f"{subject}.log"


def topic_subject(topic_id: str) -> str:
    """A topic id as one subject token: ``DEV/GOV/1/sabt/birth.v1`` -> ``DEV_GOV_1_sabt_birth-v1``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", topic_id.replace(".", "-"))


class Shipper(Background):
    """Follows ``message_log`` and ``events`` and publishes what is new to JetStream."""

    def __init__(
        self, engine: Engine, url: str, instance: str, configured: str = "", chain: str = ""
    ) -> None:
        self.engine = engine
        self.url = url
        self.chain = chain
        self.stream, self.subject = names(instance, configured)
        self.log_subject = log_subject(self.subject, chain)
        self.shipped = {"log": 0, "events": 0}

    async def _run(self) -> None:
        import nats
        from nats.js.api import StorageType, StreamConfig

        while True:
            nc = None
            try:
                nc = await nats.connect(self.url, connect_timeout=3, max_reconnect_attempts=0)
                js = nc.jetstream()
                log_stream, event_stream = f"{self.stream}_LOG", f"{self.stream}_EVENTS"
                for name, subjects in (
                    (log_stream, [f"{self.subject}.log", f"{self.subject}.log.>"]),
                    (event_stream, [f"{self.subject}.events.>"]),
                ):
                    config = StreamConfig(
                        name=name,
                        subjects=subjects,
                        storage=StorageType.FILE,
                        duplicate_window=120.0,
                    )
                    try:
                        info = await js.stream_info(name)
                    except Exception:
                        await js.add_stream(config)
                        continue
                    if not set(subjects) <= set(info.config.subjects or []):
                        # a stream made before there were several chains
                        info.config.subjects = sorted(
                            set(info.config.subjects or []) | set(subjects)
                        )
                        await js.update_stream(info.config)
                cursors = {
                    "log": await self._last(js, log_stream, self.log_subject),
                    "events": await self._last(js, event_stream),
                }
                while True:
                    sent = await self._ship_log(js, cursors) + await self._ship_events(js, cursors)
                    if not sent:
                        await asyncio.sleep(IDLE_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS away or refusing: try again; the database keeps all
                log.warning("shipping to NATS at %s stopped: %s; retrying", _safe(self.url), exc)
                await asyncio.sleep(RETRY_SECONDS)
            finally:
                if nc is not None:
                    with contextlib.suppress(Exception):
                        await nc.close()

    async def _last(self, js: Any, stream: str, subject: str | None = None) -> int:
        try:
            if subject is not None:
                msg = await js.get_last_msg(stream, subject)
            else:
                info = await js.stream_info(stream)
                if not info.state.messages:
                    return 0
                msg = await js.get_msg(stream, seq=info.state.last_seq)
        except Exception:
            return 0
        return int((msg.headers or {}).get("Dargah-Seq", "0"))

    def _read_log(self, after: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            q = (
                select(message_log)
                .where(message_log.c.chain == self.chain, message_log.c.seq > after)
                .order_by(message_log.c.seq)
                .limit(BATCH)
            )
            return [dict(r) for r in conn.execute(q).mappings()]

    def _read_events(self, after: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            q = select(events).where(events.c.seq > after).order_by(events.c.seq).limit(BATCH)
            return [dict(r) for r in conn.execute(q).mappings()]

    async def _ship_log(self, js: Any, cursors: dict[str, int]) -> int:
        rows = await asyncio.to_thread(self._read_log, cursors["log"])
        for row in rows:
            seq = int(row["seq"])
            headers = {"Nats-Msg-Id": f"log-{log_id(self.chain, seq)}", "Dargah-Seq": str(seq)}
            if self.chain:
                headers["Dargah-Chain"] = self.chain
            await js.publish(
                self.log_subject,
                json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode(),
                headers=headers,
            )
            cursors["log"] = seq
            self.shipped["log"] += 1
        return len(rows)

    async def _ship_events(self, js: Any, cursors: dict[str, int]) -> int:
        rows = await asyncio.to_thread(self._read_events, cursors["events"])
        for row in rows:
            seq = int(row["seq"])
            await js.publish(
                f"{self.subject}.events.{topic_subject(row['topic_id'])}",
                str(row["body"]).encode(),
                headers={
                    "Nats-Msg-Id": f"event-{row['topic_id']}-{row['event_id']}",
                    "Dargah-Seq": str(seq),
                    "Dargah-Topic": row["topic_id"],
                },
            )
            cursors["events"] = seq
            self.shipped["events"] += 1
        return len(rows)
