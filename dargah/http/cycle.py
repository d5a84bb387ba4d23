"""One request and its response on a connection: the ASGI ``receive`` and ``send`` of it, or,
for an application's direct handler, the request itself and :meth:`Cycle.respond`."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import MutableMapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dargah.http.protocol import HttpProtocol

Message = MutableMapping[str, Any]
REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_STATUS_LINES = {code: b"HTTP/1.1 %d %s\r\n" % (code, phrase) for code, phrase in REASONS.items()}
_NO_BODY = frozenset({204, 304})


class DateHeader:
    """The Date header, formatted once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = (
                b"date: "
                + time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)).encode()
                + b"\r\n"
            )
        return self._value


DATE = DateHeader()


class Cycle:
    """One request and its response.

    An ASGI request has its ``scope``; a request for a direct handler has none, and carries
    what the handler reads: ``method``, ``target`` (the raw path, no query), ``query``,
    ``headers`` (names in lower case), ``client``, ``scheme`` and ``cert`` (the x5t#S256 of
    the client certificate the connection, or a trusted proxy, presented).
    """

    __slots__ = (
        "body",
        "cert",
        "chunked",
        "client",
        "complete",
        "disconnected",
        "expect_100",
        "head",
        "headers",
        "keep_alive",
        "malformed",
        "method",
        "more",
        "proto",
        "query",
        "response_done",
        "response_started",
        "scheme",
        "scope",
        "status",
        "target",
    )

    def __init__(
        self,
        proto: HttpProtocol,
        scope: dict[str, Any] | None,
        keep_alive: bool,
        expect_100: bool,
        method: str = "GET",
    ) -> None:
        self.proto = proto
        self.scope = scope
        self.method = method
        self.target = b""
        self.query = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        self.cert: str | None = None
        self.malformed: str | None = None  # never set: the server refuses what it cannot read
        self.keep_alive = keep_alive
        self.expect_100 = expect_100
        self.body: collections.deque[bytes] = collections.deque()
        self.complete = False
        self.disconnected = False
        self.more: asyncio.Event | None = None  # made only when receive() has to wait
        self.response_started = False
        self.response_done = False
        self.chunked = False
        self.head = b""
        self.status = 0

    def wake(self) -> None:
        """More of the body, its end, or a disconnect: wake a waiting receive()."""
        if self.more is not None:
            self.more.set()

    # -- ASGI receive ------------------------------------------------------

    async def receive(self) -> Message:
        proto = self.proto
        if self.expect_100 and not self.complete:
            self.expect_100 = False
            if proto.transport is not None and not proto.transport.is_closing():
                proto.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while not self.body and not self.complete and not self.disconnected:
            proto.resume_reading()
            if self.more is None:
                self.more = asyncio.Event()
            self.more.clear()
            await self.more.wait()
        if self.disconnected and not self.body:
            return {"type": "http.disconnect"}
        data = b"".join(self.body)
        self.body.clear()
        proto.resume_reading()
        return {"type": "http.request", "body": data, "more_body": not self.complete}

    # -- ASGI send ----------------------------------------------------------

    async def send(self, message: Message) -> None:
        proto = self.proto
        if proto.write_paused:
            await proto.drained()
        kind = message["type"]
        if kind == "http.response.start":
            if self.response_started:
                raise RuntimeError("the response has already started")
            self.response_started = True
            self.status = status = int(message["status"])
            lines = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"Unknown")), DATE.get()]
            has_length = False
            for name, value in message.get("headers", ()):
                lname = name.lower()
                if lname == b"content-length":
                    has_length = True
                elif lname == b"connection":
                    if value.lower() == b"close":
                        self.keep_alive = False
                    continue
                elif lname == b"transfer-encoding":
                    continue
                lines += (name, b": ", value, b"\r\n")
            if not has_length and status not in _NO_BODY and self.method != "HEAD":
                self.chunked = True
                lines.append(b"transfer-encoding: chunked\r\n")
            if not self.keep_alive:
                lines.append(b"connection: close\r\n")
            lines.append(b"\r\n")
            self.head = b"".join(lines)
            return
        if kind != "http.response.body":
            return
        if not self.response_started:
            raise RuntimeError("http.response.body before http.response.start")
        if self.response_done:
            return
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        if self.method == "HEAD" or self.status in _NO_BODY:
            body = b""
        if self.chunked:
            out = (b"%x\r\n%s\r\n" % (len(body), body)) if body else b""
            if not more:
                out += b"0\r\n\r\n"
        else:
            out = body
        if self.head:
            out = self.head + out
            self.head = b""
        transport = proto.transport
        if out and transport is not None and not transport.is_closing():
            transport.write(out)
        if not more:
            self.response_done = True
            proto.response_finished(self)

    # -- direct handlers -----------------------------------------------------

    def body_now(self) -> bytes | None:
        """The whole body when it is all in (the common case); None when it is still to come
        (read it with :meth:`receive`)."""
        if not self.complete or (self.disconnected and not self.body):
            return None
        if not self.body:
            return b""
        data = b"".join(self.body)
        self.body.clear()
        return data

    def respond(self, status: int, head: bytes, body: bytes) -> None:
        """Write the whole response at once: ``head`` is its header lines (``name: value\\r\\n``
        each, Content-Length among them), ``body`` its content (not sent for HEAD, 204, 304).
        The caller waits for :meth:`HttpProtocol.drained` first when writing is paused."""
        proto = self.proto
        self.response_started = True
        self.status = status
        if self.method == "HEAD" or status in _NO_BODY:
            body = b""
        line = _STATUS_LINES.get(status) or b"HTTP/1.1 %d Unknown\r\n" % status
        out = b"%s%s%s%s\r\n%s" % (
            line,
            DATE.get(),
            head,
            b"" if self.keep_alive else b"connection: close\r\n",
            body,
        )
        transport = proto.transport
        if transport is not None and not transport.is_closing():
            transport.write(out)
        self.response_done = True
        proto.response_finished(self)


async def send_plain(cycle: Cycle, status: int, body: bytes) -> None:
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
