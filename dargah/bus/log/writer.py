"""The group-commit writer: each bus process appends batches to the log.

Request handlers hand a record over and wait; everything appended in one turn
of the event loop is committed as one transaction, then all its handlers wake
at once. No response leaves before its record is committed. When the database
fails, waiting handlers get :class:`LogUnavailable` and the bus refuses new
calls until the writer reconnects (fail closed).

Who commits depends on what a commit costs. Where it may wait (for fsync, or for
PostgreSQL over the network) a thread commits, so that the event loop goes on
serving meanwhile. Where it never waits (SQLite without fsync on commit, the
default) the event loop commits itself: handing each batch to a thread and back
cost more than the commit (measured in docs/performance.md). It never waits for
the other processes either: when one of them holds the log, the batch stays open,
more records join it, and the loop tries again a moment later. The thread then
only seals, indexes, checkpoints and reconnects, on a connection of its own.

A writer writes one chain (``chain``; '' is the unnamed chain that processes may
share). A writer of a named chain also signs instance checkpoints (protocol §6):
the heads of every chain, when it starts and stops and every
:data:`INSTANCE_CHECKPOINT_SECONDS` while its chain grows.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dargah.bus.log.backends import Body, LogBackend
from dargah.bus.log.chain import log_id
from dargah.bus.log.lookup import INDEX_SECONDS
from dargah.bus.log.upkeep import CHECKPOINT_SECONDS, LogUpkeep, SealAt
from dargah.core.keys import EdDSASigner

log = logging.getLogger("dargah.log")
MAX_BATCH = 2000
# When another process holds the log: the event loop tries again on its next turn for up to
# SPIN_SECONDS (a commit holds the log for a fraction of that), then every RETRY_SECONDS, so
# that an idle loop does not spin while an index batch or a checkpoint holds it longer.
SPIN_SECONDS = 0.002
RETRY_SECONDS = 0.001
BUSY_SECONDS = 30.0  # a batch that could not be committed for this long is refused
# A call whose record a waiting commit (the database away, its connection not yet known broken)
# has not settled within this long is refused: 503 within 5 s, as the protocol asks.
COMMIT_WAIT_SECONDS = 4.5
_STOP = object()
_BROKEN = object()  # from the event loop: its commit failed, reconnect


class LogUnavailable(Exception):
    """The message log cannot be written; the call must be refused."""


class LogWriter(LogUpkeep):
    def __init__(
        self,
        open_backend: Callable[[], LogBackend],
        signer: EdDSASigner,
        *,
        seal_every_records: int = 1000,
        seal_every_seconds: float = 1.0,
        chain: str = "",
    ) -> None:
        self.chain = chain
        self._open = open_backend
        self._signer = signer
        self._seal_records = seal_every_records
        self._seal_seconds = seal_every_seconds
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._backend: LogBackend | None = None
        self.healthy = False
        self.committed = 0
        self.batches = 0
        self._last_sealed = 0
        self._last_seal_time = 0.0
        self._last_index_time = 0.0
        self._last_checkpoint_time = 0.0
        self._index_behind = False
        self._tail: tuple[int, str] = (0, "")  # one attribute: the thread reads it whole
        self._group: _Group | None = None
        self._here: LogBackend | None = None  # the event loop's own connection, when it commits
        self._commits_here = False
        self._retry: asyncio.Handle | None = None
        self._seal_asked_at = 0  # the seq of the last seal the event loop asked for
        self._closing = False
        self._checkpointed: tuple[int, str] | None = None  # the own head in the last checkpoint
        self._last_instance_checkpoint = 0.0
        # How long the thread waits for work before its rounds of sealing, indexing, checkpoints.
        self._wait = min(seal_every_seconds / 2, INDEX_SECONDS, CHECKPOINT_SECONDS)

    # -- lifecycle ---------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Connect, seal the tail left by any earlier run, and start the thread."""
        self._loop = loop
        self._connect()
        assert self._backend is not None
        self._commits_here = self._backend.nonblocking_append() is not None
        self._backend.register()
        self._seal(force=True)
        self._instance_checkpoint(force=True)
        self._thread = threading.Thread(target=self._run, name="dargah-log-writer", daemon=True)
        self._thread.start()

    def flush(self) -> None:
        """Commit what the event loop holds, waiting for the log if need be (on the loop's
        thread, before :meth:`stop`); later appends are refused."""
        self._closing = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        group, self._group = self._group, None
        if group is None:
            return
        if not self._commits_here:
            self._queue.put(group)
            return
        error: BaseException | None = None
        try:
            backend = self._connection_here()
            records = [item[0] for item in group.items]
            backend.append(records, [item[1] for item in group.items])
            self._committed(records)
        except Exception as exc:
            log.error("message log commit failed: %s", exc)
            error = exc
        _settle([group.future], error)

    def stop(self) -> None:
        """Drain what is waiting, seal, and close."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout=30)
        if self._thread.is_alive():  # stuck on the database: leave its connection to it
            log.error("the log writer did not stop within 30 s; the tail stays unsealed")
            return
        self._thread = None
        if self._backend is not None:
            try:
                self._seal(force=True)
                self._instance_checkpoint(force=True)
            except Exception:
                log.exception("could not seal the log at stop")
            try:
                while self._backend.index_lookups():
                    pass
            except Exception as exc:
                log.warning("indexing the log by subject and request id at stop failed: %s", exc)
            self._backend.close()
            self._backend = None
        if self._here is not None:
            self._here.close()
            self._here = None

    def log_id(self, seq: int) -> str:
        """The ``GSB-Log-Id`` of this writer's record ``seq``."""
        return log_id(self.chain, seq)

    # -- the request side ---------------------------------------------------

    async def append(self, record: dict[str, Any], body: Body | None = None) -> int:
        """Append a record and wait until it is committed; returns its seq.

        Records appended during one turn of the event loop are committed together (by the
        loop itself, or by the thread) and settled together: one commit per turn at most.
        """
        if not self.healthy or self._closing:
            raise LogUnavailable("the message log is not writable")
        group = self._group
        if group is None:
            assert self._loop is not None
            group = self._group = _Group(self._loop.create_future(), self._loop.time())
            self._loop.call_soon(self._hand_over)
        group.items.append((record, body))
        await group.future
        return int(record["seq"])

    def _hand_over(self) -> None:
        if self._commits_here:
            self._commit_here()
            return
        group, self._group = self._group, None
        if group is not None:
            assert self._loop is not None
            # commits on the loop settle or refuse by themselves; the thread's may hang on a
            # database that is away: its callers are refused after COMMIT_WAIT_SECONDS
            self._loop.call_later(COMMIT_WAIT_SECONDS, _expire, group.future)
            self._queue.put(group)

    # -- commits by the event loop -----------------------------------------

    def _connection_here(self) -> LogBackend:
        if self._here is None:
            self._here = self._open()
        return self._here

    def _commit_here(self) -> None:
        self._retry = None
        group = self._group
        if group is None:
            return
        error: BaseException | None = None
        try:
            if not self.healthy:
                raise LogUnavailable("the message log is not writable")
            records = [item[0] for item in group.items]
            append = self._connection_here().nonblocking_append()
            assert append is not None  # the same kind of connection as the thread's
            if not append(records, [item[1] for item in group.items]):
                loop = self._loop
                assert loop is not None
                now = loop.time()
                if group.busy_since == 0.0:
                    group.busy_since = now
                if now - group.busy_since < SPIN_SECONDS:
                    self._retry = loop.call_soon(self._commit_here)
                    return
                if now - group.opened < BUSY_SECONDS:
                    self._retry = loop.call_later(RETRY_SECONDS, self._commit_here)
                    return
                raise LogUnavailable(f"the message log stayed locked for {BUSY_SECONDS:g} s")
            self._committed(records)
        except Exception as exc:
            log.error("message log commit failed: %s", exc)
            error = exc
            self.healthy = False  # the thread reconnects; this connection is opened again
            self._queue.put(_BROKEN)
            _close_quietly(self._here)
            self._here = None
        self._group = None
        _settle([group.future], error)

    def _count(self, records: list[dict[str, Any]]) -> None:
        self.committed += len(records)
        self.batches += 1
        self._tail = (records[-1]["seq"], records[-1]["hash"])

    def _committed(self, records: list[dict[str, Any]]) -> None:
        """After the event loop's commit: count it, and ask the thread for the seals due."""
        self._count(records)
        first, last = records[0]["seq"], records[-1]["seq"]
        # As the thread does: a seal of the batch's last record once seal_records have come
        # since the last seal, and of records within the batch when it is longer than that.
        base, n = max(self._seal_asked_at, self._last_sealed), self._seal_records
        while last - base >= n:
            seq = last if last - base < 2 * n else max(base + n, first)
            self._queue.put(SealAt(seq, records[seq - first]["hash"]))
            self._seal_asked_at = base = seq

    # -- the writer thread --------------------------------------------------

    def _connect(self) -> None:
        _close_quietly(self._backend)
        self._backend = None
        self._backend = self._open()
        self._tail = self._backend.tail()
        self._last_sealed = self._backend.last_sealed_seq()
        self.healthy = True

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self._wait if self.healthy else 0.5)
            except queue.Empty:
                if not self.healthy:
                    self._try_reconnect()
                else:
                    self._maybe_seal()
                    self._maybe_index()
                    self._maybe_checkpoint()
                    self._maybe_instance_checkpoint()
                continue
            if isinstance(first, SealAt):
                self._seal_record(first)
                continue
            if first is _BROKEN:
                if not self.healthy:
                    self._try_reconnect()
                continue
            stop = first is _STOP
            groups: list[_Group] = [] if stop else [first]
            size = sum(len(g.items) for g in groups)
            # A batch never spans much more than one seal interval.
            while size < min(MAX_BATCH, self._seal_records):
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                if isinstance(item, SealAt):
                    self._seal_record(item)
                    continue
                if item is _BROKEN:
                    continue
                groups.append(item)
                size += len(item.items)
            if groups:
                self._commit(groups)
            if stop:
                return
            self._maybe_seal()
            self._maybe_index()
            self._maybe_checkpoint()
            self._maybe_instance_checkpoint()

    def _commit(self, groups: list[_Group]) -> None:
        records = [item[0] for g in groups for item in g.items]
        bodies = [item[1] for g in groups for item in g.items]
        error: BaseException | None = None
        try:
            if self._backend is None or not self.healthy:
                self._try_reconnect()
            if self._backend is None:
                raise LogUnavailable("no connection to the message log")
            self._backend.append(records, bodies)
            self._count(records)
        except Exception as exc:
            log.error("message log commit failed: %s", exc)
            self.healthy = False
            error = exc
        assert self._loop is not None
        self._loop.call_soon_threadsafe(_settle, [g.future for g in groups], error)

    def _try_reconnect(self) -> None:
        try:
            self._connect()
            log.info("message log writable again")
        except Exception as exc:
            self.healthy = False
            log.warning("message log still unavailable: %s", exc)
            time.sleep(0.2)


def _close_quietly(backend: LogBackend | None) -> None:
    if backend is None:
        return
    try:
        backend.close()
    except Exception:
        log.debug("closing a broken log connection failed", exc_info=True)


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(
            LogUnavailable(f"the message log did not commit within {COMMIT_WAIT_SECONDS:g} s")
        )


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for fut in futures:
        if fut.done():
            continue
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(LogUnavailable(str(error)))


@dataclass(slots=True)
class _Group:
    """Records appended in one turn of the event loop (and, while the log is held elsewhere,
    the turns after), settled by one future."""

    future: asyncio.Future[None]
    opened: float
    items: list[tuple[dict[str, Any], Body | None]] = field(default_factory=list)
    busy_since: float = 0.0  # when the event loop first found the log held by another process
