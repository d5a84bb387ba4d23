"""What every logged bus call shares: its record, its refusals, its body, and its answer.

A call's answer is (status, header lines, body): the header lines as bytes, ``name:
value\\r\\n`` each, ready for the wire. The server writes it at once for the bus's own
``/r1/`` path; :func:`send_answer` hands it to an ASGI ``send`` for everything else.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dargah.core.errors import PROBLEM_CONTENT_TYPE, PROBLEMS, problem_body, problem_bytes

if TYPE_CHECKING:
    from dargah.bus.runtime import BusRuntime

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Answer = tuple[int, bytes, bytes]
Body = tuple[str, bytes, bytes | None, bytes | None]

# Where the server puts the x5t#S256 of the client certificate the connection presented.
CLIENT_CERT = "dargah.client_cert_s256"
_PROBLEM_TYPE = b"content-type: " + PROBLEM_CONTENT_TYPE.encode() + b"\r\n"


class CallRequest(Protocol):
    """One request as the proxy reads it: the server's request object for the ``/r1/`` path,
    or :class:`AsgiRequest` over an ASGI scope."""

    method: str
    target: bytes
    query: bytes
    headers: list[tuple[bytes, bytes]]
    client: tuple[str, int] | None
    scheme: str
    cert: str | None

    @property
    def malformed(self) -> str | None: ...

    @property
    def receive(self) -> Receive: ...

    def body_now(self) -> bytes | None: ...


class AsgiRequest:
    """A :class:`CallRequest` over an ASGI scope and ``receive``."""

    __slots__ = (
        "cert",
        "client",
        "headers",
        "malformed",
        "method",
        "query",
        "receive",
        "scheme",
        "target",
    )

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.method: str = scope["method"]
        raw = scope.get("raw_path")
        self.target: bytes = raw if raw else scope["path"].encode("latin-1", "replace")
        self.query: bytes = scope.get("query_string", b"")
        self.headers: list[tuple[bytes, bytes]] = scope["headers"]
        self.client: tuple[str, int] | None = scope.get("client")
        self.scheme: str = scope.get("scheme", "http")
        self.cert: str | None = scope.get(CLIENT_CERT)
        self.malformed: str | None = scope.get("dargah.malformed")
        self.receive = receive

    def body_now(self) -> bytes | None:
        return None


class Refusal(Exception):
    def __init__(
        self,
        code: str,
        detail: str,
        detail_fa: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.detail_fa = detail_fa
        self.headers = headers or []


def too_large(limit: int) -> Refusal:
    return Refusal(
        "payload-too-large", f"the request body is over the service's limit of {limit} bytes"
    )


def new_record(ts: str, method: str, path: str, query: bytes) -> dict[str, Any]:
    """A message-log record as it starts: the rest is filled in along the call's path."""
    return {
        "ts": ts,
        "request_id": "",
        "client": None,
        "service": None,
        "method": method,
        "path": path[:2048],
        "query_hash": hashlib.sha256(query).hexdigest() if query else None,
        "purpose": None,
        "subject_ref": None,
        "user": None,
        "request_hash": None,
        "response_hash": None,
        "request_bytes": 0,
        "response_bytes": 0,
    }


def request_digest(method: str, path: str, query: bytes, body: bytes) -> bytes:
    data = b"%s\n%s\n%s\n%s" % (method.encode(), path.encode("latin-1"), query, body)
    return hashlib.sha256(data).digest()


async def read_body(receive: Receive, limit: int, timeout: float | None = None) -> bytes:
    """The whole request body, at most ``limit`` bytes. With a ``timeout``, a body not complete
    at once must arrive within it (a client that stalls is refused, its connection closed)."""
    message = await receive()
    if not message.get("more_body", False) and message["type"] == "http.request":
        body: bytes = message.get("body", b"")  # the common case: the body is in already
        if len(body) > limit:
            raise too_large(limit)
        return body
    if timeout is None:
        return await _read_rest(receive, limit, message)
    try:
        async with asyncio.timeout(timeout):
            return await _read_rest(receive, limit, message)
    except TimeoutError:
        raise Refusal(
            "bad-request", f"the request body did not arrive within {timeout:g} s"
        ) from None


async def _read_rest(receive: Receive, limit: int, message: MutableMapping[str, Any]) -> bytes:
    chunks = []
    size = 0
    while True:
        if message["type"] == "http.disconnect":
            raise Refusal("bad-request", "the client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        more = message.get("more_body", False)
        if not more:
            return b"".join(chunks)
        message = await receive()


def lines(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Header pairs as header lines."""
    return b"".join([b"%s: %s\r\n" % pair for pair in headers])


def pairs(head: bytes) -> list[tuple[bytes, bytes]]:
    """Header lines as header pairs."""
    out = []
    for line in head.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b": ")
            out.append((name, value))
    return out


def problem_answer(code: str, detail: str, request_id: str | None, head: bytes = b"") -> Answer:
    """A problem response with no log record (only when the log itself is down, or for an
    error the bus did not expect)."""
    body = problem_bytes(problem_body(code, detail, request_id))
    out = b"%sgsb-error: %s\r\ncontent-length: %d\r\n%s" % (
        _PROBLEM_TYPE,
        code.encode(),
        len(body),
        head,
    )
    if request_id:
        out += b"gsb-request-id: %s\r\n" % request_id.encode()
    return PROBLEMS[code].status, out, body


def refusal_body(code: str, detail: str, request_id: str, detail_fa: str | None) -> bytes:
    return problem_bytes(problem_body(code, detail, request_id, detail_fa))


def refusal_head(code: str) -> bytes:
    return b"%sgsb-error: %s\r\n" % (_PROBLEM_TYPE, code.encode())


async def send_answer(send: Send, answer: Answer) -> None:
    status, head, body = answer
    await send({"type": "http.response.start", "status": status, "headers": pairs(head)})
    await send({"type": "http.response.body", "body": body})


async def send_problem(
    send: Send, code: str, detail: str, request_id: str | None, headers: list[tuple[bytes, bytes]]
) -> None:
    """A problem response with no log record (only when the log itself is down)."""
    await send_answer(send, problem_answer(code, detail, request_id, lines(headers)))


def encrypt(rt: BusRuntime, request_id: str, request: bytes, response: bytes) -> Body:
    kid, key = rt.body_key
    aes = AESGCM(key)
    n1, n2 = os.urandom(12), os.urandom(12)
    aad = request_id.encode()
    return kid, n1 + n2, aes.encrypt(n1, request, aad), aes.encrypt(n2, response, aad)
