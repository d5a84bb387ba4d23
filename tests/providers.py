"""A real HTTP provider on loopback whose behaviour is chosen by the path, for bus tests.

- ``/echo/...``      200 JSON describing what arrived (method, path, query, headers, body)
- ``/status/N``      status N from the provider itself, with headers a provider might send
- ``/big/N``         a body of N bytes
- ``/slow/S``        answers after S seconds
- ``/cut``           promises 1000 bytes, sends 10, closes
- ``/reset``         closes the connection at once (RST)
- ``/endless``       a chunked body that never ends
- ``/redirect``      302 to elsewhere (the bus must not follow it)
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(
        self,
        status: int,
        body: bytes,
        ctype: str = "application/json",
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        body = self._body()
        path, _, query = self.path.partition("?")
        parts = path.split("/")
        kind = parts[1] if len(parts) > 1 else ""
        if kind == "echo" or kind == "api":
            payload = {
                "method": self.command,
                "path": path,
                "query": query,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "header_list": [[k.lower(), v] for k, v in self.headers.items()],
                "body_b64": base64.b64encode(body).decode(),
            }
            self._send(200, json.dumps(payload).encode(), extra={"X-Provider": "echo"})
        elif kind == "status":
            code = int(parts[2])
            self._send(
                code,
                f"provider says {code}".encode(),
                "text/plain; charset=utf-8",
                {"X-Provider": "status", "GSB-Error": "spoofed", "GSB-Log-Id": "999999"},
            )
        elif kind == "big":
            self._send(200, b"x" * int(parts[2]), "application/octet-stream")
        elif kind == "slow":
            time.sleep(float(parts[2]))
            self._send(200, b'{"slow":true}')
        elif kind == "cut":
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n0123456789"
            )
            self.wfile.flush()
            self.close_connection = True
        elif kind == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
        elif kind == "endless":
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            chunk = b"x" * 65536
            try:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                pass
            self.close_connection = True
        elif kind == "redirect":
            self._send(302, b"", "text/plain", {"Location": "http://127.0.0.1:9/elsewhere"})
        else:
            self._send(404, b'{"error":"no such path"}')

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # many connections open at once under load
    daemon_threads = True


class Provider:
    """A provider server in a background thread; ``url`` is its base URL."""

    def __init__(self) -> None:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Provider:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
