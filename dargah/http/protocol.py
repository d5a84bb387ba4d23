"""HTTP/1.1 on asyncio and httptools, handing each request to an ASGI application.

A lean server for the bus's per-request path: no more work per request than
parsing, one scope dictionary, and one write per response in the common case.
It keeps connections alive, answers pipelined requests in order, applies
back-pressure in both directions, and bounds what a client can make it hold
and for how long: the request line and the headers (counted as the bytes
arrive, before the parser buffers them), ambiguous body framing (refused,
:mod:`dargah.http.framing`), and time: idle connections, a request's head and
its body each have a deadline (:class:`~dargah.http.framing.Limits`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httptools

from dargah.http.cycle import Cycle, send_plain
from dargah.http.framing import (
    MAX_FRAMING_OVERHEAD,
    MAX_HEAD,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    MAX_URL,
    Limits,
    Refused,
    check_framing,
    malformed_to_app,
    rejection,
)
from dargah.http.scope import asgi_scope, direct_cycle
from dargah.http.tls import thumbprint

log = logging.getLogger("dargah.http")

Message = MutableMapping[str, Any]
ASGIApp = Callable[..., Awaitable[None]]
DirectHandler = Callable[[Cycle], Awaitable[tuple[int, bytes, bytes]]]

HIGH_WATER = 1024 * 1024
_WATCHED = frozenset({b"transfer-encoding", b"content-length", b"expect"})
_METHODS = {m: m.decode() for m in (b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE")}


class ServerState:
    """What all connections of one server share.

    ``cert_header`` names a request header (RFC 9440 ``Client-Cert``) that carries the client
    certificate a TLS-terminating proxy verified; it is read only on connections from
    ``is_trusted_proxy`` addresses.

    An application may serve some paths without ASGI: its ``direct`` attribute, a coroutine
    function taking the request's :class:`Cycle` and returning (status, header lines, body),
    gets every request whose raw path starts with ``direct_prefix`` and none of
    ``direct_except`` (and has no percent-encoding); it is not called for requests the
    server refuses itself. Everything else goes to the application as ASGI.
    """

    def __init__(
        self,
        app: ASGIApp,
        host: str,
        port: int,
        limits: Limits | None = None,
        cert_header: bytes = b"",
        is_trusted_proxy: Callable[[str], bool] | None = None,
    ) -> None:
        self.app = app
        self.direct: DirectHandler | None = getattr(app, "direct", None)
        self.direct_prefix: bytes = getattr(app, "direct_prefix", b"\0")
        self.direct_except: tuple[bytes, ...] = getattr(app, "direct_except", ())
        self.server_addr = (host, port)
        self.limits = limits or Limits()
        self.cert_header = cert_header.lower()
        self.is_trusted_proxy = is_trusted_proxy
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
        self.scheme = "http"
        self.cert_s256: str | None = None  # the client certificate's SHA-256 (base64url), if any
        self.read_cert_header = False
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0
        self.expect_100 = False
        self.framing: list[tuple[bytes, bytes]] = []  # Transfer-Encoding and Content-Length
        self.in_head = False  # a request's head has begun and is not complete
        self.head_bytes = 0
        self.wire_bytes = 0  # bytes received while reading the current body
        self.body_bytes = 0  # of which body
        self.current: Cycle | None = None  # the request being read
        self.running: Cycle | None = None  # the request being answered
        self.queue: collections.deque[Cycle] = collections.deque()
        self.read_paused = False
        self.write_paused = False
        self._drained: asyncio.Event | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._ready_from = 0.0  # when the connection became ready for a request
        self._body_of: Cycle | None = None  # the body whose deadline runs, and the deadline
        self._body_due = 0.0
        self._pending_reject: tuple[int, str] | None = None
        self.reject_hook = malformed_to_app

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        tls = transport.get_extra_info("ssl_object")
        if tls is not None:  # called once the handshake is done: the peer's certificate is known
            self.scheme = "https"
            der = tls.getpeercert(binary_form=True)
            if der:
                self.cert_s256 = thumbprint(der)
        state = self.state
        if state.cert_header and state.is_trusted_proxy is not None and self.client is not None:
            self.read_cert_header = state.is_trusted_proxy(self.client[0])
        state.connections.add(self)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for cycle in (self.current, self.running, *self.queue):
            if cycle is not None:
                cycle.disconnected = True
                cycle.wake()
        if self._drained is not None:
            self._drained.set()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.in_head:
            # Counted before the parser sees the bytes: it buffers a header until its line ends.
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD:
                self._reject(431, "the request head is too large")
                return
        elif self.current is not None:
            self.wire_bytes += len(data)
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
            return
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, Refused):
                self._reject(cause.status, cause.detail)
            else:
                log.exception("error while reading a request")
                self._reject(400, "malformed request")
            return
        except httptools.HttpParserError as exc:
            self._reject(400, f"malformed HTTP request: {exc}")
            return
        if (
            self.current is not None
            and self.wire_bytes > 2 * self.body_bytes + MAX_FRAMING_OVERHEAD
        ):
            self._reject(400, "the chunked framing is far larger than the body it carries")

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
        self.in_head = True
        self.head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > MAX_URL:
            raise Refused(414, "the request target is too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > MAX_HEADER_BYTES or len(self.headers) >= MAX_HEADERS:
            raise Refused(431, "the request headers are too large")
        name = name.lower()
        self.headers.append((name, value))
        if name in _WATCHED:
            if name != b"expect":
                self.framing.append((name, value))
            elif value.lower() == b"100-continue":
                self.expect_100 = True

    def on_headers_complete(self) -> None:
        parser = self.parser
        self.in_head = False
        keep_alive = parser.should_keep_alive()
        if self.framing:
            framing, self.framing = self.framing, []
            if check_framing(
                [v for n, v in framing if n == b"transfer-encoding"],
                [v for n, v in framing if n == b"content-length"],
                parser.get_http_version(),
            ):
                keep_alive = False
            self.wire_bytes = self.body_bytes = 0
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("ascii")
        url = self.url
        if url[:1] != b"/":
            if url == b"*":
                url = b"/"
            else:  # absolute form
                parsed = httptools.parse_url(url)
                url = (parsed.path or b"/") + (b"?" + parsed.query if parsed.query else b"")
        raw_path, _, query = url.partition(b"?")
        state = self.state
        if (
            state.direct is not None
            and raw_path.startswith(state.direct_prefix)
            and not raw_path.startswith(state.direct_except)
            and b"%" not in raw_path
        ):
            cycle = direct_cycle(self, method, keep_alive, raw_path, query)
        else:
            cycle = Cycle(
                self,
                asgi_scope(self, method, parser.get_http_version(), raw_path, query),
                keep_alive,
                self.expect_100,
                method,
            )
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
        self.body_bytes += len(body)
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
        task = self.loop.create_task(
            self._call(cycle) if cycle.scope is not None else self._direct(cycle)
        )
        self.state.tasks.add(task)
        task.add_done_callback(self.state.tasks.discard)
        if self._timer is None and cycle is self.current:  # its body is still to come: timed
            self._timer = self.loop.call_at(self.loop.time(), self._tick)

    async def _call(self, cycle: Cycle) -> None:
        try:
            await self.state.app(cycle.scope, cycle.receive, cycle.send)
        except Exception:
            log.exception("unhandled error in the application")
            if not cycle.response_started:
                cycle.keep_alive = False
                await send_plain(cycle, 500, b'{"code":"internal","detail":"internal error"}')
            elif self.transport is not None:
                self.transport.close()
            return
        if not cycle.response_done:
            if not cycle.response_started:
                await send_plain(cycle, 500, b'{"code":"internal","detail":"no response"}')
            else:
                await cycle.send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _direct(self, cycle: Cycle) -> None:
        assert self.state.direct is not None
        try:
            status, head, body = await self.state.direct(cycle)
        except Exception:
            log.exception("unhandled error in the application")
            if not cycle.response_started:
                cycle.keep_alive = False
                await send_plain(cycle, 500, b'{"code":"internal","detail":"internal error"}')
            elif self.transport is not None:
                self.transport.close()
            return
        if self.write_paused:
            await self.drained()
        cycle.respond(status, head, body)

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
            self._arm()

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

        Requests before it on the same connection are answered first, in order. A request whose
        head was read but whose body cannot be is never run if it was waiting its turn; if it is
        running, its application sees the client disconnect and the answer goes out now.
        """
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        broken, self.current = self.current, None
        self.in_head = False
        if broken is not None:
            broken.disconnected = True
            broken.keep_alive = False
            broken.wake()
            if broken is self.running:
                self.pause_reading()
                if not broken.response_started:
                    transport.write(rejection(status, detail))
                transport.close()
                return
            if broken in self.queue:
                self.queue.remove(broken)
        if self.running is not None or self.queue:
            self._pending_reject = (status, detail)
            self.pause_reading()
            return
        if (
            broken is None
            and status != 408
            and self.url.startswith((b"/r1/", b"/e1/"))
            and self.reject_hook is not None
        ):
            # The application records even calls it cannot read (the bus's message log).
            self.pause_reading()
            self.reject_hook(self, detail)
            return
        transport.write(rejection(status, detail))
        transport.close()

    # -- deadlines -----------------------------------------------------------

    # A connection keeps one timer rather than one per request: when it fires it looks at what
    # the connection is waiting for (the next request, the rest of a head, the rest of a body)
    # and closes it, or waits on until that deadline. While an application works on a complete
    # request nothing is expected from the client and the timer rests until the answer is out.

    def _arm(self) -> None:
        """The connection is ready for a request (new, or its last answer written)."""
        self._ready_from = self.loop.time()
        if self._timer is None:
            self._timer = self.loop.call_at(self._ready_from + self.state.limits.idle, self._tick)

    def _tick(self) -> None:
        self._timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        limits = self.state.limits
        now = self.loop.time()
        cycle = self.current
        if cycle is not None and cycle is self.running:  # reading the body of a running request
            if cycle is not self._body_of:
                self._body_of, self._body_due = cycle, now + limits.body
            if now >= self._body_due:
                self._reject(408, "the request body did not arrive in time")
                return
            due = self._body_due
        elif self.running is not None or self.queue:
            return  # armed again when the answer is out, or a waiting body starts to count
        elif self.in_head:
            due = self._ready_from + limits.header
            if now >= due:
                self._reject(408, "the request head did not arrive in time")
                return
        else:
            due = self._ready_from + limits.idle
            if now >= due:
                transport.close()
                return
        self._timer = self.loop.call_at(due, self._tick)

    def shutdown(self) -> None:
        """Close now if idle; otherwise after the response being written."""
        if self.running is None and self.transport is not None:
            self.transport.close()
