"""What the server refuses before an application sees a request, and how it says so.

RFC 9112 §6 leaves a server two ways to learn where a request's body ends:
``Transfer-Encoding: chunked`` or one ``Content-Length``. Anything else is
ambiguous, and ambiguity is how requests are smuggled past one server to
another: the server answers 400 and closes the connection.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dargah.http.cycle import DATE, REASONS, Cycle

if TYPE_CHECKING:
    from dargah.http.protocol import HttpProtocol

MAX_URL = 16 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 200
# The whole head as it arrives on the wire, request line and line ends included.
MAX_HEAD = MAX_URL + MAX_HEADER_BYTES + 8 * 1024
# Bytes of chunked framing (sizes, extensions, line ends) beyond the body they carry.
MAX_FRAMING_OVERHEAD = 64 * 1024
_DIGITS = frozenset(b"0123456789")

# Requests refused before an application sees them: (problem code, title, Persian title).
REJECTIONS = {
    400: ("bad-request", "Bad request", "درخواست نادرست است"),
    408: ("request-timeout", "Request not received in time", "درخواست به‌موقع نرسید"),
    414: ("uri-too-long", "Request target too long", "نشانی درخواست بیش از حد طولانی است"),
    431: ("headers-too-large", "Request headers too large", "سرآیندهای درخواست بیش از حد بزرگ است"),
}


@dataclass(frozen=True)
class Limits:
    """How long a client may take: to start a request on an idle connection, to send a request's
    head once the connection is ready for it, and to send a request's body once its head is in."""

    idle: float = 5.0
    header: float = 10.0
    body: float = 60.0


class Refused(Exception):
    """A request the server answers itself (``status``) and then closes the connection."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def check_framing(
    transfer_encoding: list[bytes], content_length: list[bytes], http_version: str
) -> bool:
    """Raise :class:`Refused` unless the body's framing is unambiguous (RFC 9112 §6.1-6.3).

    Returns whether the connection must close after the response: an HTTP/1.0 request with a
    transfer coding has faulty framing even when it reads (§6.1).
    """
    if transfer_encoding:
        if content_length:
            raise Refused(400, "a request must not have both Transfer-Encoding and Content-Length")
        codings = [c.strip().lower() for c in b",".join(transfer_encoding).split(b",")]
        if codings != [b"chunked"]:
            raise Refused(400, "Transfer-Encoding must be exactly chunked")
        return http_version == "1.0"
    if content_length:
        if len(content_length) > 1:
            raise Refused(400, "Content-Length must appear only once")
        value = content_length[0].strip(b" \t")
        if not value or len(value) > 18 or not _DIGITS.issuperset(value):
            raise Refused(400, "Content-Length must be a decimal number")
    return False


def rejection(status: int, detail: str) -> bytes:
    """The whole response for a request the server refuses itself, ending the connection."""
    code, title, title_fa = REJECTIONS.get(status, REJECTIONS[400])
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
    return b"HTTP/1.1 %d %s\r\n%scontent-type: application/problem+json\r\n" % (
        status,
        REASONS.get(status, b"Error"),
        DATE.get(),
    ) + b"gsb-error: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (
        code.encode(),
        len(body),
        body,
    )


def malformed_to_app(proto: HttpProtocol, detail: str) -> None:
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
    cycle = Cycle(proto, scope, keep_alive=False, expect_100=False, method=method)
    cycle.complete = True
    proto._run(cycle)
