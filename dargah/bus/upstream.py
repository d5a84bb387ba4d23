"""Pooled HTTP/1.1 connections to providers, with a size limit and a deadline per call.

A small client on asyncio's protocol interface and the httptools parser: on
the per-request path a general-purpose client costs several times more. It
reads the whole response up to the service's limit before the caller sees a
status, so an oversized response is refused and a cut one is reported.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from dataclasses import dataclass, field

import httptools

from dargah.bus.outbound import OutboundGuard, Refused
from dargah.core.netaddr import BadTarget, parse_host

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


class UpstreamError(Exception):
    """``code`` is the protocol's problem code for the failure."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(slots=True)
class UpstreamResponse:
    """``headers`` as the provider sent them, names in lower case."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[UpstreamResponse]
    limit: int
    head: bool
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    got_bytes: bool = False


class _Connection(asyncio.Protocol):
    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._pending: _Pending | None = None
        self.closed = False
        self.reused = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        p = self._pending
        if p is None:  # bytes nobody asked for: the connection is unusable
            self.close()
            return
        p.got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail("provider-unavailable", "provider switched protocols")
        except httptools.HttpParserError as exc:
            self._fail("provider-unavailable", f"provider sent a malformed response: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.forget(self)
        p = self._pending
        if p is not None:
            if exc is None and p.status and _close_delimited(p.headers):
                # A body with neither Content-Length nor chunked framing ends when the provider
                # closes the connection (RFC 9112 §6.3): a clean close completes it.
                self._finish(keep=False)
            else:
                self._fail(
                    "provider-unavailable",
                    "provider closed the connection before the response was complete",
                )

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._pending is not None
        self._pending.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        p = self._pending
        assert p is not None
        p.status = self._parser.get_status_code()
        if p.head or p.status in (204, 304) or 100 <= p.status < 200:
            if 100 <= p.status < 200:
                self._fail("provider-unavailable", "provider sent an informational response")
                return
            self._finish(keep=not p.head and self._parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        p = self._pending
        if p is None:
            return
        p.size += len(body)
        if p.size > p.limit:
            self._fail(
                "response-too-large",
                f"provider's response is over the service's limit of {p.limit} bytes",
            )
            return
        p.chunks.append(body)

    def on_message_complete(self) -> None:
        if self._pending is not None:
            self._finish(keep=self._parser.should_keep_alive())

    # internals
    def _finish(self, keep: bool) -> None:
        p = self._pending
        assert p is not None
        self._pending = None
        if not p.future.done():
            p.future.set_result(UpstreamResponse(p.status, p.headers, b"".join(p.chunks)))
        if keep and not self.closed:  # the parser reads the next response as it reads a new one
            self._pool.release(self)
        else:
            self.close()

    def _fail(self, code: str, detail: str) -> None:
        p = self._pending
        self._pending = None
        if p is not None and not p.future.done():
            p.future.set_exception(UpstreamError(code, detail))
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._pool.forget(self)
            if self.transport is not None:
                self.transport.abort()

    def send(self, data: bytes, pending: _Pending) -> None:
        assert self.transport is not None
        self._pending = pending
        self.transport.write(data)


def _close_delimited(headers: list[tuple[bytes, bytes]]) -> bool:
    return not any(n in (b"content-length", b"transfer-encoding") for n, _ in headers)


class Pool:
    """Connections to one provider endpoint (host, port), at most ``limit`` at once, or as many
    as ``slots`` allows when several pools share one limit. Each new connection goes to an
    address ``guard`` resolved and allowed."""

    def __init__(
        self,
        host: str,
        port: int,
        limit: int,
        guard: OutboundGuard,
        tls: bool = False,
        slots: Slots | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._guard = guard
        self._ssl: ssl.SSLContext | None = ssl.create_default_context() if tls else None
        try:
            literal = parse_host(host)
        except BadTarget:
            literal = None  # the guard refuses it
        self._server_name = host if literal is None else str(literal)
        name = f"[{host}]" if ":" in host else host  # an IPv6 literal is bracketed (RFC 9110 §7.2)
        self._host_header = name.encode() if port in (80, 443) else f"{name}:{port}".encode()
        self._idle: collections.deque[_Connection] = collections.deque()
        self._slots = slots or Slots(limit)
        self.limit = limit
        self.open = 0

    def release(self, conn: _Connection) -> None:
        conn.reused = True
        self._idle.append(conn)

    def forget(self, conn: _Connection) -> None:
        try:
            self._idle.remove(conn)
        except ValueError:
            pass

    def _idle_connection(self) -> _Connection | None:
        """The most recently released connection that is still open, if any."""
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    async def _new_connection(self, timeout: float) -> _Connection:
        try:
            return await asyncio.wait_for(self._open(), max(timeout, 0.001))
        except TimeoutError:
            raise _timeout(timeout) from None
        except Refused as exc:
            raise UpstreamError("provider-unavailable", str(exc)) from None
        except OSError as exc:
            raise UpstreamError(
                "provider-unavailable", f"cannot connect to the provider: {exc.strerror or exc}"
            ) from exc

    async def _open(self) -> _Connection:
        """A new connection to the first of the host's allowed addresses that answers."""
        loop = asyncio.get_running_loop()
        failure: OSError | None = None
        for family, address in await self._guard.addresses(self.host, self.port):
            try:
                _, proto = await loop.create_connection(
                    lambda: _Connection(self),
                    address,
                    self.port,
                    family=family,
                    ssl=self._ssl,
                    server_hostname=self._server_name if self._ssl else None,
                )
                return proto
            except OSError as exc:
                failure = exc
        raise failure or OSError(f"{self.host} has no address")

    async def request(
        self,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]] | bytes,
        body: bytes,
        limit: int,
        timeout: float,
    ) -> UpstreamResponse:
        """Send one request; raises UpstreamError with the protocol code on any failure.

        ``headers``: pairs, or header lines (``name: value\\r\\n`` each) already joined.
        The whole exchange, waiting for a connection slot included, gets ``timeout``
        seconds. (A timer on the response's future, not an asyncio timeout scope: this is
        the per-request path.)
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        slots = self._slots
        if slots.free > 0 and not slots.waiters:
            slots.free -= 1
        else:
            await slots.acquire(loop, timeout)
        try:
            if not isinstance(headers, bytes):
                headers = b"".join([b"%s: %s\r\n" % pair for pair in headers])
            length = (
                b"Content-Length: %d\r\n" % len(body)
                if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS")
                else b""
            )
            data = b"%s %s HTTP/1.1\r\nHost: %s\r\n%s%s\r\n%s" % (
                method.encode(),
                target,
                self._host_header,
                headers,
                length,
                body,
            )
            for attempt in (1, 2):
                # an idle connection without a coroutine; a new one opened only when none is
                conn = self._idle_connection() or await self._new_connection(deadline - loop.time())
                pending = _Pending(loop.create_future(), limit, method == "HEAD")
                timer = loop.call_at(deadline, _expire, conn, pending, timeout)
                conn.send(data, pending)
                try:
                    return await pending.future
                except UpstreamError as exc:
                    # A kept-alive connection the provider had closed: retry once on a new one.
                    if not (
                        attempt == 1
                        and exc.code == "provider-unavailable"
                        and conn.reused
                        and not pending.got_bytes
                        and method in IDEMPOTENT
                    ):
                        raise
                except asyncio.CancelledError:
                    conn.close()
                    raise
                finally:
                    timer.cancel()
            raise UpstreamError("provider-unavailable", "provider closed the connection")
        finally:
            slots.release()


class Slots:
    """How many connections a provider may have in use at once: a counting semaphore whose
    common case (a slot free) costs the caller two attribute reads and no call."""

    __slots__ = ("free", "waiters")

    def __init__(self, limit: int) -> None:
        self.free = limit
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        """Wait (first come, first served) for a slot, at most ``timeout`` seconds."""
        if self.free > 0 and not self.waiters:
            self.free -= 1
            return
        waiter: asyncio.Future[None] = loop.create_future()
        self.waiters.append(waiter)
        timer = loop.call_later(timeout, _give_up, waiter)
        try:
            await waiter
        except TimeoutError:
            raise _timeout(timeout) from None
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release()  # handed a slot, then cancelled: pass it on
            raise
        finally:
            timer.cancel()

    def release(self) -> None:
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes straight to the next in line
                return
        self.free += 1


def _give_up(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def _timeout(timeout: float) -> UpstreamError:
    return UpstreamError("provider-timeout", f"provider did not answer within {timeout:g} s")


def _expire(conn: _Connection, pending: _Pending, timeout: float) -> None:
    if not pending.future.done():
        pending.future.set_exception(_timeout(timeout))
        conn.close()


class Pools:
    """One pool per provider subsystem and endpoint; the connection limit is the subsystem's
    (protocol §4): subsystems behind one gateway do not share it, one subsystem's endpoints do."""

    def __init__(self, limit: int, guard: OutboundGuard) -> None:
        self.guard = guard
        self._pools: dict[tuple[str, str, int, bool], Pool] = {}
        self._slots: dict[str, Slots] = {}
        self._limit = limit

    def get(self, provider: str, host: str, port: int, tls: bool) -> Pool:
        key = (provider, host, port, tls)
        pool = self._pools.get(key)
        if pool is None:
            slots = self._slots.get(provider)
            if slots is None:
                slots = self._slots[provider] = Slots(self._limit)
            pool = self._pools[key] = Pool(host, port, self._limit, self.guard, tls, slots)
        return pool
