"""The bus's HTTP server against what an attacker sends on a raw socket (RFC 9112 framing).

Every ambiguous or malformed framing gets 400 and a closed connection at once, and reaches no
provider; slow and endless heads and bodies are cut at their deadlines; none of it makes the
server hold more than a few megabytes or stalls other clients.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.harness import World, make_world

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 4.0
IDLE_TIMEOUT = 2.0
# Deadlines are checked by one timer per connection: allow its granularity and a busy machine.
SLACK = IDLE_TIMEOUT + 4.0


class _Counting(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen = 0

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _handle(self) -> None:
        type(self).seen += 1
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = _handle


@dataclass
class Edge:
    world: World
    token: str
    sid: str
    provider: type[_Counting]

    @property
    def pid(self) -> int:
        assert self.world.bus is not None
        return self.world.bus.pid


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    handler = type("Counting", (_Counting,), {"seen": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    home: Path = tmp_path_factory.mktemp("edge") / "home"
    w = make_world(home, f"http://127.0.0.1:{server.server_address[1]}")
    sid = w.add_service("echo.v1", "/")
    w.grant("cons", sid)
    w.start(
        DARGAH_HEADER_TIMEOUT=str(HEADER_TIMEOUT),
        DARGAH_BODY_TIMEOUT=str(BODY_TIMEOUT),
        DARGAH_IDLE_TIMEOUT=str(IDLE_TIMEOUT),
    )
    try:
        yield Edge(w, w.token(), sid, handler)
    finally:
        w.stop()
        server.shutdown()
        server.server_close()


def _rss_kib(pid: int) -> int:
    m = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    assert m
    return int(m.group(1))


def _exchange(port: int, data: bytes, wait: float) -> tuple[bytes, bool, float]:
    """Send ``data``, read until the server closes or ``wait`` passes: (answer, closed, took)."""
    started = time.monotonic()
    answer = b""
    closed = False
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        with contextlib.suppress(OSError):
            s.sendall(data)
        deadline = started + wait
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            except OSError:  # reset after the answer: closed too
                closed = True
                break
            if not chunk:
                closed = True
                break
            answer += chunk
    return answer, closed, time.monotonic() - started


def _statuses(answer: bytes) -> list[int]:
    return [int(m) for m in re.findall(rb"^HTTP/1\.[01] (\d{3})", answer, re.M)]


def _call_line(edge: Edge, method: bytes = b"POST") -> bytes:
    return (
        method
        + b" /r1/"
        + edge.sid.encode()
        + b"/x HTTP/1.1\r\nHost: bus\r\nAuthorization: Bearer "
        + edge.token.encode()
        + b"\r\n"
    )


CHUNKED_BODY = b"3\r\nabc\r\n0\r\n\r\n"

# name -> (extra header lines, body): each is refused with 400 and a close, never forwarded.
FRAMING = {
    "TE xchunked": (b"Transfer-Encoding: xchunked\r\n", CHUNKED_BODY),
    "TE chunked not last": (b"Transfer-Encoding: chunked, identity\r\n", CHUNKED_BODY),
    "TE gzip then chunked": (b"Transfer-Encoding: gzip, chunked\r\n", CHUNKED_BODY),
    "TE chunked twice in one": (b"Transfer-Encoding: chunked, chunked\r\n", CHUNKED_BODY),
    "TE chunked twice": (
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        CHUNKED_BODY,
    ),
    "TE chunked then junk": (
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n",
        CHUNKED_BODY,
    ),
    "TE with a parameter": (b"Transfer-Encoding: chunked;q=1\r\n", CHUNKED_BODY),
    "TE quoted": (b'Transfer-Encoding: "chunked"\r\n', CHUNKED_BODY),
    "TE space before colon": (b"Transfer-Encoding : chunked\r\n", CHUNKED_BODY),
    "TE vertical tab": (b"Transfer-Encoding:\x0bchunked\r\n", CHUNKED_BODY),
    "TE folded (obs-fold)": (b"Transfer-Encoding:\r\n chunked\r\n", CHUNKED_BODY),
    "TE empty": (b"Transfer-Encoding: \r\n", CHUNKED_BODY),
    "CL.TE": (b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\nG"),
    "TE.CL": (
        b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
        b"8\r\nSMUGGLED\r\n0\r\n\r\n",
    ),
    "CL twice, equal": (b"Content-Length: 3\r\nContent-Length: 3\r\n", b"abc"),
    "CL twice, different": (b"Content-Length: 3\r\nContent-Length: 4\r\n", b"abcd"),
    "CL list": (b"Content-Length: 3, 3\r\n", b"abc"),
    "CL signed": (b"Content-Length: +3\r\n", b"abc"),
    "CL negative": (b"Content-Length: -1\r\n", b"abc"),
    "CL hex": (b"Content-Length: 0x3\r\n", b"abc"),
    "CL huge": (b"Content-Length: 99999999999999999999\r\n", b"abc"),
    "chunk size zz": (b"Transfer-Encoding: chunked\r\n", b"zz\r\nabc\r\n0\r\n\r\n"),
    "chunk size -1": (b"Transfer-Encoding: chunked\r\n", b"-1\r\nabc\r\n0\r\n\r\n"),
    "chunk size overflow": (
        b"Transfer-Encoding: chunked\r\n",
        b"10000000000000000\r\nabc\r\n0\r\n\r\n",
    ),
    "chunk size 0x": (b"Transfer-Encoding: chunked\r\n", b"0x3\r\nabc\r\n0\r\n\r\n"),
    "chunk size signed": (b"Transfer-Encoding: chunked\r\n", b"+3\r\nabc\r\n0\r\n\r\n"),
    "chunk size empty": (b"Transfer-Encoding: chunked\r\n", b"\r\nabc\r\n0\r\n\r\n"),
    "chunk data longer than its size": (
        b"Transfer-Encoding: chunked\r\n",
        b"3\r\nabcdef\r\n0\r\n\r\n",
    ),
    "chunk without CRLF after data": (b"Transfer-Encoding: chunked\r\n", b"3\r\nabcX0\r\n\r\n"),
    "chunk extension, bare LF": (b"Transfer-Encoding: chunked\r\n", b"3;x\nabc\r\n0\r\n\r\n"),
    "chunk extension 200 KiB": (
        b"Transfer-Encoding: chunked\r\n",
        b"1;" + b"a" * 200_000 + b"\r\nx\r\n0\r\n\r\n",
    ),
    "chunk extensions without end": (
        b"Transfer-Encoding: chunked\r\n",
        b"".join(b"1;e=" + b"v" * 500 + b"\r\nx\r\n" for _ in range(400)),
    ),
}


@pytest.mark.parametrize("path", ["/r1/", "/oauth/token"])
@pytest.mark.parametrize("name", list(FRAMING))
def test_ambiguous_or_malformed_framing_is_400_and_a_close_at_once_and_reaches_no_provider(
    edge: Edge, name: str, path: str
) -> None:
    headers, body = FRAMING[name]
    if path == "/r1/":
        head = _call_line(edge)
    else:
        head = b"POST /oauth/token HTTP/1.1\r\nHost: bus\r\n"
        head += b"Content-Type: application/x-www-form-urlencoded\r\n"
    before = edge.provider.seen
    answer, closed, took = _exchange(edge.world.port, head + headers + b"\r\n" + body, 5.0)
    statuses = _statuses(answer)
    assert statuses[:1] == [400], (name, answer[:300])
    assert closed, (name, "the connection was kept open", answer[:300])
    assert took < 2.0, (name, f"answered after {took:.1f} s")
    assert edge.provider.seen == before, name


def test_http_1_0_with_chunked_and_keep_alive_is_answered_then_closed(edge: Edge) -> None:
    data = (
        _call_line(edge).replace(b"HTTP/1.1", b"HTTP/1.0")
        + b"Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
        + CHUNKED_BODY
    )
    answer, closed, took = _exchange(edge.world.port, data, 5.0)
    assert len(_statuses(answer)) == 1, answer[:300]
    assert closed and took < 3.0, (closed, took)


def test_a_well_framed_chunked_call_still_reaches_the_provider(edge: Edge) -> None:
    before = edge.provider.seen
    data = _call_line(edge) + b"Transfer-Encoding: chunked\r\n\r\n3;ext=ok\r\nabc\r\n0\r\n\r\n"
    answer, _closed, _took = _exchange(edge.world.port, data, 2.0)
    assert _statuses(answer) == [200], answer[:300]
    assert edge.provider.seen == before + 1


def test_slow_heads_are_cut_at_the_header_deadline(edge: Edge) -> None:
    """Twenty slowloris connections, a byte a second: each gets 408 (or a close) in time."""
    line = b"GET /healthz HTTP/1.1\r\nHost: bus\r\nX-Slow: " + b"a" * 100
    socks = [socket.create_connection(("127.0.0.1", edge.world.port)) for _ in range(20)]
    started = time.monotonic()
    closed_at: dict[int, float] = {}
    answers: dict[int, bytes] = {i: b"" for i in range(len(socks))}
    try:
        for s in socks:
            s.setblocking(False)
        i = 0
        while len(closed_at) < len(socks) and time.monotonic() - started < HEADER_TIMEOUT + SLACK:
            for n, s in enumerate(socks):
                if n in closed_at:
                    continue
                try:
                    s.send(line[i : i + 1])
                    chunk = s.recv(4096)
                except BlockingIOError:
                    continue  # nothing to read: still open
                except OSError:
                    chunk = b""
                if not chunk:
                    closed_at[n] = time.monotonic() - started
                answers[n] += chunk
            i += 1
            time.sleep(0.5)
    finally:
        for s in socks:
            s.close()
    assert len(closed_at) == len(socks), f"{len(socks) - len(closed_at)} connections still open"
    assert max(closed_at.values()) < HEADER_TIMEOUT + SLACK
    assert all(_statuses(a) in ([408], []) for a in answers.values()), answers


def test_a_header_line_that_never_ends_is_refused_as_it_arrives_in_bounded_memory(
    edge: Edge,
) -> None:
    rss_before = _rss_kib(edge.pid)
    sent = 0
    answer = b""
    started = time.monotonic()
    other_calls: list[float] = []
    with socket.create_connection(("127.0.0.1", edge.world.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: bus\r\nX-Endless: ")
        block = b"a" * 65536
        with contextlib.suppress(OSError):
            while sent < 40 * 1024 * 1024 and time.monotonic() - started < 20:
                s.sendall(block)
                sent += len(block)
                if sent % (1024 * 1024) == 0:
                    t = time.monotonic()
                    httpx.get(f"{edge.world.url}/healthz", timeout=5).raise_for_status()
                    other_calls.append(time.monotonic() - t)
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                answer += chunk
    assert sent < 8 * 1024 * 1024, f"the server read {sent} bytes of one header line"
    assert _statuses(answer) in ([431], []), answer[:300]
    assert _rss_kib(edge.pid) - rss_before < 8 * 1024
    assert all(t < 1.0 for t in other_calls), other_calls


def test_a_stalled_body_is_cut_at_a_deadline_and_the_connection_closed(edge: Edge) -> None:
    for path, head in (
        ("r1", _call_line(edge)),
        ("token", b"POST /oauth/token HTTP/1.1\r\nHost: bus\r\n"),
        ("api", b"POST /api/v1/members HTTP/1.1\r\nHost: bus\r\n"),
    ):
        before = edge.provider.seen
        data = head + b"Content-Length: 1000\r\n\r\n" + b"x" * 10
        answer, closed, took = _exchange(edge.world.port, data, BODY_TIMEOUT + SLACK + 2)
        assert closed, (path, answer[:300])
        assert took < BODY_TIMEOUT + SLACK, (path, took)
        assert all(400 <= s < 500 for s in _statuses(answer)), (path, answer[:300])
        assert edge.provider.seen == before


def test_a_chunked_body_that_stalls_is_cut_too(edge: Edge) -> None:
    data = _call_line(edge) + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
    answer, closed, took = _exchange(edge.world.port, data, BODY_TIMEOUT + SLACK + 2)
    assert closed and took < BODY_TIMEOUT + SLACK, (closed, took, answer[:300])


def test_idle_connections_are_closed_and_a_kept_alive_one_serves_many_calls(edge: Edge) -> None:
    with socket.create_connection(("127.0.0.1", edge.world.port), timeout=10) as s:
        for _ in range(3):
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: bus\r\n\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert s.recv(65536) == b""
        assert time.monotonic() - started < IDLE_TIMEOUT + SLACK


def test_the_abuse_left_the_server_small_and_serving(edge: Edge) -> None:
    rss = _rss_kib(edge.pid)
    for _ in range(3):  # the whole corpus again: memory does not grow with it
        for headers, body in FRAMING.values():
            _exchange(edge.world.port, _call_line(edge) + headers + b"\r\n" + body, 3.0)
    assert _rss_kib(edge.pid) - rss < 8 * 1024
    r = httpx.get(
        f"{edge.world.url}/r1/{edge.sid}/x",
        headers={"Authorization": f"Bearer {edge.token}"},
        timeout=5,
    )
    assert r.status_code == 200, r.text
