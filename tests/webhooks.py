"""A real webhook receiver on loopback for event-delivery tests.

It records every POST that reaches it (path, headers, body, arrival time and
the status it answered) and its behaviour can be switched while it runs:

- ``accept()``  answers 200
- ``fail(n)``   answers ``n`` (500 by default)
- ``slow(s)``   waits ``s`` seconds, then answers 200
- ``down()``    stops the server and cuts every open connection: the port refuses connections
- ``up()``      starts it again on the SAME port, accepting
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Hit:
    """One POST that reached the webhook."""

    at: float
    """time.monotonic() when the request had been read."""
    path: str
    headers: dict[str, str]
    """Lower-case names; the first value of a repeated header."""
    body: bytes
    status: int
    """What the webhook answered (or meant to, if the bus went away meanwhile)."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def event(self) -> dict[str, Any]:
        value = json.loads(self.body)
        assert isinstance(value, dict)
        return value

    @property
    def event_id(self) -> str:
        return str(self.event["id"])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # a real server's backlog, not socketserver's 5

    def __init__(self, port: int, hook: Webhook) -> None:
        self.hook = hook
        self.open: set[socket.socket] = set()
        self.open_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.open_lock:
            self.server.open.add(self.connection)

    def finish(self) -> None:
        with self.server.open_lock:
            self.server.open.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        headers: dict[str, str] = {}
        for k, v in self.headers.items():
            headers.setdefault(k.lower(), v)
        status, delay = self.server.hook._behaviour()
        self.server.hook._record(Hit(time.monotonic(), self.path, headers, body, status))
        if delay:
            time.sleep(delay)
        answer = b'{"ok":true}' if 200 <= status < 300 else b'{"ok":false}'
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            self.wfile.flush()
        except OSError:
            self.close_connection = True


class Webhook:
    """A webhook server in background threads; ``url`` is the address to subscribe."""

    def __init__(self, path: str = "/hook") -> None:
        self._lock = threading.Lock()
        self._hits: list[Hit] = []
        self._changed = threading.Condition(self._lock)
        self._status = 200
        self._delay = 0.0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self._start()
        self.url = f"http://127.0.0.1:{self.port}{path}"

    # -- life cycle --------------------------------------------------------

    def _start(self) -> None:
        server = _Server(self.port, self)
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def __enter__(self) -> Webhook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def down(self) -> None:
        """Stop listening and cut every open connection: the bus's attempts are refused."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with server.open_lock:
            conns = list(server.open)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def up(self) -> None:
        """Listen again on the same port, accepting."""
        self.accept()
        if self._server is None:
            deadline = time.monotonic() + 5
            while True:
                try:
                    self._start()
                    return
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    @property
    def is_up(self) -> bool:
        return self._server is not None

    # -- behaviour ---------------------------------------------------------

    def accept(self) -> None:
        self._set(200, 0.0)

    def fail(self, status: int = 500) -> None:
        self._set(status, 0.0)

    def slow(self, seconds: float, status: int = 200) -> None:
        self._set(status, seconds)

    def _set(self, status: int, delay: float) -> None:
        with self._lock:
            self._status, self._delay = status, delay

    def _behaviour(self) -> tuple[int, float]:
        with self._lock:
            return self._status, self._delay

    def _record(self, hit: Hit) -> None:
        with self._changed:
            self._hits.append(hit)
            self._changed.notify_all()

    # -- what arrived ------------------------------------------------------

    @property
    def hits(self) -> list[Hit]:
        with self._lock:
            return list(self._hits)

    def ok_ids(self) -> set[str]:
        """The CloudEvents ids the webhook acknowledged at least once."""
        return {h.event_id for h in self.hits if h.ok}

    def clear(self) -> None:
        with self._lock:
            self._hits.clear()

    def wait(self, done: Callable[[list[Hit]], bool], timeout: float) -> list[Hit]:
        """Wait until ``done(hits)`` holds (or ``timeout`` seconds pass); returns the hits."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not done(self._hits):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(min(left, 0.2))
            return list(self._hits)

    def wait_for_ids(self, ids: Iterable[str], timeout: float) -> set[str]:
        """Wait until every id in ``ids`` has been acknowledged; returns those still missing."""
        wanted = set(ids)
        self.wait(lambda hits: wanted <= {h.event_id for h in hits if h.ok}, timeout)
        return wanted - self.ok_ids()


# -- setting up events on a test world ---------------------------------------

TOPIC_CODE = "birth-registered.v1"


def add_topic(w: Any, owner: str = "sabt", code: str = TOPIC_CODE) -> str:
    """A topic owned by a new (or existing) subsystem ``owner`` of the provider member."""
    from dargah.registry import topics
    from tests.harness import PROVIDER_LEGAL_ID

    if owner not in w.clients:
        w.add_client(owner, PROVIDER_LEGAL_ID)
    topic_id = f"{w.clients[owner].id}/{code}"
    engine = w.engine
    try:
        with engine.begin() as conn:
            topics.add_topic(conn, topic_id, "test")
    finally:
        engine.dispose()
    return topic_id


def subscribe(
    w: Any,
    client: str,
    topic_id: str,
    *,
    webhook: str | None = None,
    pull: bool = False,
    grant: bool = True,
) -> str:
    """Grant ``client`` the topic (unless ``grant`` is False), subscribe it; the subscription id."""
    from dargah.registry import grants, topics

    engine = w.engine
    try:
        with engine.begin() as conn:
            if grant:
                grants.request_grant(
                    conn, w.clients[client].id, topic_id, ["notification"], "test", approve=True
                )
            row = topics.add_subscription(
                conn, w.clients[client].id, topic_id, "test", webhook=webhook, pull=pull
            )
    finally:
        engine.dispose()
    return str(row["id"])


def make_event(n: int = 0, **extra: Any) -> dict[str, Any]:
    """A complete CloudEvents 1.0 event with a fresh id."""
    import uuid

    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "urn:test:sabt",
        "type": "ir.gov.sabt.birth-registered",
        "time": "2026-11-27T20:41:40.123Z",
        "datacontenttype": "application/json",
        "data": {"n": n, "name": "کودک"},
        **extra,
    }


def delivery_rows(engine: Any, subscription_id: str) -> list[dict[str, Any]]:
    """The subscription's deliveries with their event's CloudEvents id, oldest first."""
    from sqlalchemy import select

    from dargah.store.tables import deliveries, events

    with engine.connect() as conn:
        rows = conn.execute(
            select(deliveries, events.c.event_id)
            .join(events, events.c.seq == deliveries.c.event_seq)
            .where(deliveries.c.subscription_id == subscription_id)
            .order_by(deliveries.c.id)
        ).mappings()
        return [dict(r) for r in rows]


def wait_until(check: Callable[[], bool], timeout: float, every: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
