"""HTTP/1.1 on asyncio and httptools, handing each request to an ASGI application.

A lean server for the bus's per-request path: no more work per request than
parsing, one scope dictionary, and one write per response in the common case.
It keeps connections alive, answers pipelined requests in order, applies
back-pressure in both directions, and bounds what a client can make it hold:
the request line, the headers, and idle connections.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

import httptools

from dargah.http.cycle import DATE, REASONS, Cycle

log = logging.getLogger("dargah.http")

Message = MutableMapping[str, Any]
ASGIApp = Callable[..., Awaitable[None]]

MAX_URL = 16 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 200
HIGH_WATER = 1024 * 1024
IDLE_TIMEOUT = 5.0
# Requests refused before an application sees them: (problem code, title, Persian title).
_REJECTIONS = {
    400: ("bad-request", "Bad request", "درخواست نادرست است"),
    414: ("uri-too-long", "Request target too long", "نشانی درخواست بیش از حد طولانی است"),
    431: ("headers-too-large", "Request headers too large", "سرآیندهای درخواست بیش از حد بزرگ است"),
}


class _TooLarge(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class ServerState:
    """What all connections of one server share."""

    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        self.app = app
        self.server_addr = (host, port)
        self.connections: set[HttpProtocol] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.closing = False


class HttpProtocol(asyncio.Protocol):
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.client: tuple[str, int] | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0
        self.expect_100 = False
        self.current: Cycle | None = None  # the request being read
        self.running: Cycle | None = None  # the request being answered
        self.queue: collections.deque[Cycle] = collections.deque()
        self.read_paused = False
        self.write_paused = False
        self._drained: asyncio.Event | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._idle_from: float | None = None  # when the connection went idle; None while busy
        self._pending_reject: tuple[int, str] | None = None
        self.reject_hook = _malformed_to_app

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self.state.connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        self._disarm_idle()
        for cycle in (self.current, self.running, *self.queue):
            if cycle is not None:
                cycle.disconnected = True
                cycle.wake()
        if self._drained is not None:
            self._drained.set()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self._idle_from = None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # CONNECT or an Upgrade request: answer it as an ordinary request (the application
            # refuses it), without switching protocols, then close.
            cycle = self.current or (self.queue[-1] if self.queue else self.running)
            if cycle is None:
                self._reject(400, "protocol upgrades are not supported")
                return
            self.pause_reading()  # whatever follows is not HTTP
            cycle.complete = True
            cycle.keep_alive = False
            cycle.wake()
            self.current = None
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _TooLarge):
                self._reject(cause.status, cause.detail)
            else:
                log.exception("error while reading a request")
                self._reject(400, "malformed request")
        except httptools.HttpParserError:
            self._reject(400, "malformed HTTP request")

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drained is not None:
            self._drained.set()

    async def drained(self) -> None:
        if self._drained is None:
            self._drained = asyncio.Event()
        self._drained.clear()
        while self.write_paused and self.transport is not None:
            await self._drained.wait()

    # -- httptools callbacks ----------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.header_bytes = 0
        self.expect_100 = False

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > MAX_URL:
            raise _TooLarge(414, "the request target is too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > MAX_HEADER_BYTES or len(self.headers) >= MAX_HEADERS:
            raise _TooLarge(431, "the request headers are too large")
        name = name.lower()
        self.headers.append((name, value))
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100 = True

    def on_headers_complete(self) -> None:
        parser = self.parser
        method = parser.get_method().decode("ascii")
        url = self.url
        if url[:1] != b"/":
            if url == b"*":
                url = b"/"
            else:  # absolute form
                parsed = httptools.parse_url(url)
                url = (parsed.path or b"/") + (b"?" + parsed.query if parsed.query else b"")
        raw_path, _, query = url.partition(b"?")
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": parser.get_http_version(),
            "server": self.state.server_addr,
            "client": self.client,
            "scheme": "http",
            "method": method,
            "root_path": "",
            "path": unquote(raw_path.decode("latin-1"), encoding="utf-8", errors="replace")
            if b"%" in raw_path
            else raw_path.decode("latin-1"),
            "raw_path": raw_path,
            "query_string": query,
            "headers": self.headers,
            "state": {},
        }
        cycle = Cycle(self, scope, parser.should_keep_alive(), self.expect_100)
        self.current = cycle
        if self.running is None:
            self._run(cycle)
        else:
            self.queue.append(cycle)
            self.pause_reading()  # one request waits at most; the rest stay in the socket

    def on_body(self, body: bytes) -> None:
        cycle = self.current
        if cycle is None or cycle.response_done:
            return
        cycle.body.append(body)
        cycle.wake()
        if len(cycle.body) > 8 and sum(len(b) for b in cycle.body) > HIGH_WATER:
            self.pause_reading()

    def on_message_complete(self) -> None:
        cycle = self.current
        if cycle is not None:
            cycle.complete = True
            cycle.wake()
        self.current = None

    # -- running requests ---------------------------------------------------

    def _run(self, cycle: Cycle) -> None:
        self.running = cycle
        task = self.loop.create_task(self._call(cycle))
        self.state.tasks.add(task)
        task.add_done_callback(self.state.tasks.discard)

    async def _call(self, cycle: Cycle) -> None:
        try:
            await self.state.app(cycle.scope, cycle.receive, cycle.send)
        except Exception:
            log.exception("unhandled error in the application")
            if not cycle.response_started:
                cycle.keep_alive = False
                await _send_plain(cycle, 500, b'{"code":"internal","detail":"internal error"}')
            elif self.transport is not None:
                self.transport.close()
            return
        if not cycle.response_done:
            if not cycle.response_started:
                await _send_plain(cycle, 500, b'{"code":"internal","detail":"no response"}')
            else:
                await cycle.send({"type": "http.response.body", "body": b"", "more_body": False})

    def response_finished(self, cycle: Cycle) -> None:
        self.running = None
        transport = self.transport
        if transport is None:
            return
        if not cycle.keep_alive or self.state.closing or not cycle.complete:
            # A body the application did not read would be taken for the next request.
            transport.close()
            return
        if self.queue:
            self._run(self.queue.popleft())
        elif self._pending_reject is not None:
            self._reject(*self._pending_reject)
        else:
            self.resume_reading()
            self._arm_idle()

    def pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and self.transport is not None and not self.queue:
            self.read_paused = False
            self.transport.resume_reading()

    def _reject(self, status: int, detail: str) -> None:
        """Answer a request that cannot be read, then close the connection.

        Requests before it on the same connection are answered first, in order.
        """
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.current = None
        if self.running is not None or self.queue:
            self._pending_reject = (status, detail)
            self.pause_reading()
            return
        if self.url.startswith((b"/r1/", b"/e1/")) and self.reject_hook is not None:
            # The application records even calls it cannot read (the bus's message log).
            self.pause_reading()
            self.reject_hook(self, detail)
            return
        code, title, title_fa = _REJECTIONS.get(status, _REJECTIONS[400])
        body = json.dumps(
            {
                "type": f"urn:gsb:problem:{code}",
                "title": title,
                "status": status,
                "code": code,
                "request_id": None,
                "detail": detail,
                "detail_fa": title_fa,
            },
            ensure_ascii=False,
        ).encode()
        transport.write(
            b"HTTP/1.1 %d %s\r\n%scontent-type: application/problem+json\r\n"
            b"gsb-error: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, REASONS.get(status, b"Error"), DATE.get(), code.encode(), len(body), body)
        )
        transport.close()

    # -- idle connections ----------------------------------------------------

    # A connection keeps one timer while idle rather than a new one per request: the timer
    # checks when the connection last went idle and waits on, or closes it.

    def _arm_idle(self) -> None:
        self._idle_from = self.loop.time()
        if self._idle is None:
            self._idle = self.loop.call_at(self._idle_from + IDLE_TIMEOUT, self._idle_expired)

    def _disarm_idle(self) -> None:
        self._idle_from = None
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _idle_expired(self) -> None:
        self._idle = None
        since = self._idle_from
        if since is None or self.transport is None:  # busy: armed again when it goes idle
            return
        due = since + IDLE_TIMEOUT
        if self.loop.time() < due:
            self._idle = self.loop.call_at(due, self._idle_expired)
        elif self.running is None:
            self.transport.close()

    def shutdown(self) -> None:
        """Close now if idle; otherwise after the response being written."""
        if self.running is None and self.transport is not None:
            self.transport.close()


def _malformed_to_app(proto: HttpProtocol, detail: str) -> None:
    """Hand a request whose headers could not be read to the application, flagged, then close."""
    try:
        method = proto.parser.get_method().decode("ascii")
    except Exception:
        method = "GET"
    raw_path, _, query = proto.url.partition(b"?")
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": proto.state.server_addr,
        "client": proto.client,
        "scheme": "http",
        "method": method,
        "root_path": "",
        "path": raw_path.decode("latin-1"),
        "raw_path": raw_path[:MAX_URL],
        "query_string": query[:MAX_URL],
        "headers": proto.headers[:MAX_HEADERS],
        "state": {},
        "dargah.malformed": detail,
    }
    cycle = Cycle(proto, scope, keep_alive=False, expect_100=False)
    cycle.complete = True
    proto._run(cycle)


async def _send_plain(cycle: Cycle, status: int, body: bytes) -> None:
    await cycle.send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await cycle.send({"type": "http.response.body", "body": body})
