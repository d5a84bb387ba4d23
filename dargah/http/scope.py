"""The ASGI scope of a request the server hands to an application."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from dargah.http.tls import cert_from_header

if TYPE_CHECKING:
    from dargah.http.protocol import HttpProtocol


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
    if proto.cert_s256 is not None:
        scope["dargah.client_cert_s256"] = proto.cert_s256
    elif proto.read_cert_header:
        cert = cert_from_header(proto.headers, proto.state.cert_header)
        if cert is not None:
            scope["dargah.client_cert_s256"] = cert
    return scope
