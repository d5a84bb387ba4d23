"""What the server hands an application for a request: an ASGI scope, or, for a direct
handler, the request's :class:`Cycle` itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from dargah.http.cycle import Cycle
from dargah.http.tls import cert_from_header

if TYPE_CHECKING:
    from dargah.http.protocol import HttpProtocol


def client_cert(proto: HttpProtocol) -> str | None:
    """The x5t#S256 of the client certificate of the request being read: the connection's own,
    or the one a trusted TLS-terminating proxy names in its header."""
    if proto.cert_s256 is not None:
        return proto.cert_s256
    if proto.read_cert_header:
        return cert_from_header(proto.headers, proto.state.cert_header)
    return None


def asgi_scope(
    proto: HttpProtocol, method: str, http_version: str, raw_path: bytes, query: bytes
) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": http_version,
        "server": proto.state.server_addr,
        "client": proto.client,
        "scheme": proto.scheme,
        "method": method,
        "root_path": "",
        "path": unquote(raw_path.decode("latin-1"), encoding="utf-8", errors="replace")
        if b"%" in raw_path
        else raw_path.decode("latin-1"),
        "raw_path": raw_path,
        "query_string": query,
        "headers": proto.headers,
        "state": {},
    }
    cert = client_cert(proto)
    if cert is not None:
        scope["dargah.client_cert_s256"] = cert
    return scope


def direct_cycle(
    proto: HttpProtocol, method: str, keep_alive: bool, raw_path: bytes, query: bytes
) -> Cycle:
    """The request for an application's direct handler, carrying what the handler reads."""
    cycle = Cycle(proto, None, keep_alive, proto.expect_100, method)
    cycle.target = raw_path
    cycle.query = query
    cycle.headers = proto.headers
    cycle.client = proto.client
    cycle.scheme = proto.scheme
    cycle.cert = client_cert(proto)
    return cycle
