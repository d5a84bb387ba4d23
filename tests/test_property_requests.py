"""Whatever a client sends to ``/r1/``, the bus answers by the protocol and stays up (§3, §4, §6).

One bus runs for the whole module. Hypothesis sends it calls with arbitrary paths, queries,
methods, bodies and header values; a small model of the protocol's check order (§4)
predicts the answer of each. Then raw, malformed HTTP goes over plain sockets. At the
end the bus is still healthy and its message log holds every exchange, chained.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dargah.bus.request import MAX_PATH
from dargah.core.errors import PROBLEMS
from dargah.core.identifiers import (
    InvalidIdentifier,
    is_national_code,
    make_national_code,
    parse_service_id,
)
from dargah.registry import quotas, services
from dargah.registry.grants import PURPOSE_RE
from tests.harness import PURPOSE, SUBJECT, World, make_world
from tests.providers import Provider
from tests.test_crash_safety import check_log

pytestmark = pytest.mark.slow

# §4's table, and the codes Dargah added that the bus path may answer with.
BUS_CODES = {
    "bad-request",
    "unauthenticated",
    "access-denied",
    "purpose-required",
    "purpose-not-allowed",
    "subject-required",
    "subject-invalid",
    "unknown-service",
    "service-disabled",
    "payload-too-large",
    "rate-limited",
    "circuit-open",
    "provider-unavailable",
    "provider-timeout",
    "response-too-large",
    "log-unavailable",
    "not-found",
    "method-not-allowed",
}
# Answers given only after the rate limit took its token (§4's order).
PAST_THE_RATE_LIMIT = {
    None,
    "payload-too-large",
    "circuit-open",
    "provider-unavailable",
    "provider-timeout",
    "response-too-large",
}
PLAIN_LIMIT = 4096


@dataclass
class Bus:
    world: World
    client: httpx.Client
    token: str
    sids: dict[str, str]  # name → service id
    personal: set[str]
    granted: set[str]
    limit: dict[str, int]
    limited_tokens: int = 1  # the "limited" service's bucket: burst 1, refills every 1000 s
    seen: list[tuple[int, str, int, str]] = field(default_factory=list)  # seq, rid, status, outcome


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory, provider: Provider) -> Iterator[Bus]:
    home: Path = tmp_path_factory.mktemp("requests") / "home"
    w = make_world(home, provider.url)
    sids = {
        "personal": w.add_service("person-inquiry.v1", personal_data=True),
        "plain": w.add_service("plain.v1", max_body=PLAIN_LIMIT),
        "limited": w.add_service("limited.v1"),
        "maint": w.add_service("maint.v1"),
        "nogrant": w.add_service("nogrant.v1"),
        "removed": w.add_service("removed.v1"),
        "ghost": w.sid("ghost.v1"),
    }
    for name in ("personal", "plain", "limited", "maint", "removed"):
        w.grant("cons", sids[name])
    with w.engine.begin() as conn:
        services.update_service(conn, sids["maint"], {"maintenance": True}, "test")
        services.remove_service(conn, sids["removed"], "test")
        quotas.set_quota(
            conn, w.clients["cons"].id, 0.001, "test", service_id=sids["limited"], burst=1
        )
    w.start()
    client = httpx.Client(base_url=w.url, timeout=httpx.Timeout(20.0))
    try:
        yield Bus(
            w,
            client,
            w.token(),
            sids,
            personal={"personal"},
            granted={"personal", "plain", "limited", "maint"},
            limit={"plain": PLAIN_LIMIT},
        )
    finally:
        client.close()
        w.stop()


# -- strategies -----------------------------------------------------------------------

# What httpx (h11) can put in a header value: visible ASCII, space, tab and obs-text.
header_chars = st.characters(
    codec="latin-1", exclude_characters="\r\n\x00", exclude_categories=("Cc",)
) | st.sampled_from("\t\x80\x9f\xa0\xff")
header_text = st.text(header_chars, max_size=40).map(lambda s: s.strip(" \t"))
long_header_text = st.text(header_chars, min_size=250, max_size=300).map(lambda s: s.strip(" \t"))


def weighted(*options: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each chosen with its weight: most calls well-formed, some not."""
    # (st.one_of would merge the repeated strategies and lose the weights)
    choices = [strategy for weight, strategy in options for _ in range(weight)]
    return st.sampled_from(choices).flatmap(lambda strategy: strategy)


segment_chars = st.characters(codec="ascii", exclude_characters="/?#% ", exclude_categories=("Cc",))
plain_segments = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.~", min_size=1, max_size=10)
odd_segments = st.one_of(
    st.text(segment_chars, max_size=12),
    st.binary(min_size=1, max_size=6).map(lambda b: "".join(f"%{x:02X}" for x in b)),
    st.sampled_from(
        [
            ".",
            "..",
            "%2e",
            "%2E%2e",
            ".%2e",
            "...",
            "",
            "%",
            "%zz",
            "%00",
            "%2F",
            "%ff",
            "a%2fb",
            "~",
            "%7e",
            "%252e%252e",
            "..%2f",
            "%2e%2e%5c",
            "a\\b",
        ]
    ),
)
segments = weighted((4, plain_segments), (1, odd_segments))
paths = weighted(
    (4, st.just("")),
    (12, st.lists(segments, max_size=6).map(lambda segs: "/" + "/".join(segs))),
    (2, st.lists(segments, max_size=4).map(lambda segs: "//" + "//".join(segs) + "/")),
    (1, st.integers(MAX_PATH - 120, MAX_PATH + 200).map(lambda n: "/" + "x" * n)),
)
queries = st.one_of(st.none(), st.text(segment_chars | st.sampled_from("/?%=&"), max_size=30))
malformed_ids = st.one_of(
    st.sampled_from(
        [
            "TEST/GOV/10100387143/prov",
            "TEST/GOV/10100387143/prov/Echo.v1",
            "TEST/GOV/1/prov/x",
            "TEST/GOV/10100387144/prov/plain.v1",
            "test/GOV/10100387143/prov/plain.v1",
            "TEST/XXX/10100387143/prov/plain.v1",
            "TEST/GOV/10100387143/P/plain.v1",
            "TEST/GOV/10100387143/prov/plain.v1.v2",
            "TEST/GOV/10100387143/prov/" + "a" * 65,
            "TEST/GOV/10100387143/prov/%70lain.v1",
            "TEST//GOV/10100387143/prov/plain.v1",
            "",
        ]
    ),
    st.lists(st.text(segment_chars, max_size=8), min_size=1, max_size=6).map("/".join),
)
services_drawn = weighted(
    (4, st.sampled_from(["personal", "plain", "plain"])),
    (2, st.sampled_from(["limited", "maint", "nogrant", "removed", "ghost"])),
    (1, malformed_ids.map(lambda raw: "raw:" + raw)),
)
methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
bodies = weighted(
    (2, st.just(b"")),
    (3, st.binary(max_size=300)),
    (1, st.integers(PLAIN_LIMIT - 3, PLAIN_LIMIT + 3).map(lambda n: b"b" * n)),
)


@st.composite
def authorizations(draw: st.DrawFn) -> str | None:
    kind = draw(
        st.sampled_from(
            ["good"] * 8 + ["lower", "spaces", "junk", "absent", "basic", "bearer-junk", "tampered"]
        )
    )
    if kind == "absent":
        return None
    if kind == "junk":
        return draw(header_text)
    if kind == "basic":
        return "Basic " + base64.b64encode(draw(st.binary(min_size=1, max_size=20))).decode()
    if kind == "bearer-junk":
        return ("Bearer " + draw(header_text)).strip(" \t")
    return kind  # filled in with the real token at call time


def _auth_value(kind: str | None, token: str) -> str | None:
    if kind == "good":
        return f"Bearer {token}"
    if kind == "lower":
        return f"bearer {token}"
    if kind == "spaces":
        return f"Bearer    {token}"
    if kind == "tampered":  # another first character of the MAC: always other bytes
        head, mac = token.rsplit(".", 1)
        return f"Bearer {head}.{'B' if mac[0] == 'A' else 'A'}{mac[1:]}"
    return kind


purposes = weighted(
    (3, st.just(PURPOSE)),
    (2, st.none()),
    (1, st.sampled_from(["tax-audit", "", PURPOSE.upper()])),
    (1, header_text),
)
subjects = weighted(
    (3, st.just(SUBJECT)),
    (2, st.none()),
    (
        1,
        st.sampled_from(
            [make_national_code("123456780"), "0499370898", "", "۰۴۹۹۳۷۰۸۹۹", "049937089"]
        ),
    ),
    (1, header_text),
)
users = weighted((6, st.none()), (6, header_text), (1, long_header_text))
request_ids = weighted(
    (6, st.none()), (6, st.uuids().map(str)), (1, st.uuids().map(lambda u: u.hex)), (1, header_text)
)
traceparents = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ]
    ),
    header_text,
)
content_types = st.one_of(
    st.none(), header_text, st.sampled_from(["application/json", "text/plain; charset=utf-8"])
)
duplicates = st.sampled_from(
    [None] * 36 + ["GSB-Purpose", "GSB-User", "Authorization", "GSB-Request-Id"]
)


@dataclass
class Call:
    method: str
    service: str
    path: str
    query: str | None
    body: bytes
    chunked: bool
    auth: str | None
    purpose: str | None
    subject: str | None
    user: str | None
    request_id: str | None
    traceparent: str | None
    content_type: str | None
    duplicate: str | None


calls = st.builds(
    Call,
    method=methods,
    service=services_drawn,
    path=paths,
    query=queries,
    body=bodies,
    chunked=st.booleans(),
    auth=authorizations(),
    purpose=purposes,
    subject=subjects,
    user=users,
    request_id=request_ids,
    traceparent=traceparents,
    content_type=content_types,
    duplicate=duplicates,
)


# -- the model of §3/§4 -------------------------------------------------------------------


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _decoded_path_is_odd(path: str) -> bool:
    """A path an implementation may call malformed once decoded: dot segments behind
    encoded separators, encoded control characters, broken percent-encoding."""
    decoded = unquote(path)
    if any(seg in (".", "..") for seg in decoded.replace("\\", "/").split("/")):
        return True
    if any(c < " " or c == "\x7f" for c in decoded):
        return True
    return any(
        not (
            path[i + 1 : i + 3].isascii()
            and len(path[i + 1 : i + 3]) == 2
            and all(h in "0123456789abcdefABCDEF" for h in path[i + 1 : i + 3])
        )
        for i, ch in enumerate(path)
        if ch == "%"
    )


def expected_codes(
    b: Bus, c: Call, service_id: str, path: str, headers: list[tuple[bytes, bytes]]
) -> set[str | None]:
    """The answers §3/§4 allow for this call: problem codes, or None for "reaches the provider".

    Where the protocol leaves a choice to the implementation (is an odd value malformed,
    or just not allowed?), each answer it permits is in the set.
    """
    named: dict[str, list[str]] = {}
    for n, v in headers:
        named.setdefault(n.decode().lower(), []).append(v.decode("latin-1"))
    allowed: set[str | None] = set()
    if c.method not in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
        allowed.add("method-not-allowed")  # §3 lists six methods; refusing others is fine
    # 1. identifiers and headers well-formed
    if any(len(values) > 1 for values in named.values()):
        return allowed | {"bad-request"}  # the same header twice
    for rid in named.get("gsb-request-id", []):
        if not _is_uuid(rid.strip()):
            return allowed | {"bad-request"}
        if str(uuid.UUID(rid.strip())) != rid.strip().lower():
            allowed.add("bad-request")  # a UUID, but not in its usual form
    if any(len(v.strip()) > 256 for v in named.get("gsb-user", [])):
        return allowed | {"bad-request"}
    if len(f"/r1/{service_id}{path}") > MAX_PATH:
        return allowed | {"bad-request"}
    try:
        parse_service_id(service_id)
    except InvalidIdentifier:
        return allowed | {"bad-request"}
    if any(unquote(seg) in (".", "..") for seg in path.split("/") if seg):
        return allowed | {"bad-request"}
    if _decoded_path_is_odd(path):
        allowed.add("bad-request")
    purpose = named.get("gsb-purpose", [""])[0].strip() or None
    if purpose is not None and not PURPOSE_RE.fullmatch(purpose):
        allowed.add("bad-request")  # malformed, or merely not in the grant (step 5)
    subject = named.get("gsb-subject", [""])[0].strip() or None
    if subject is not None and not (len(subject) == 10 and subject.isascii() and subject.isdigit()):
        allowed.add("bad-request")  # malformed, or merely failing the checksum (step 6)
    # 2. authentication
    auth = named.get("authorization", [None])[0]
    if auth is None or auth[:7].lower() != "bearer " or auth[7:].strip() != b.token:
        return allowed | {"unauthenticated"}
    # 3. the service exists, 4. the grant
    name = next((n for n, s in b.sids.items() if s == service_id), None)
    if name is None or name in ("ghost", "removed"):
        return allowed | {"unknown-service"}
    if name not in b.granted:
        return allowed | {"access-denied"}
    # 5. purpose, 6. subject
    if purpose is None:
        if name in b.personal:
            return allowed | {"purpose-required"}
    elif purpose != PURPOSE:
        return allowed | {"purpose-not-allowed"}
    if subject is None:
        if name in b.personal:
            return allowed | {"subject-required"}
    elif not is_national_code(subject):
        return allowed | {"subject-invalid"}
    # 7. maintenance, 8. rate limit, 9. body size
    if name == "maint":
        return allowed | {"service-disabled"}
    if name == "limited" and b.limited_tokens == 0:
        return allowed | {"rate-limited"}
    limit = b.limit.get(name, 10 * 1024 * 1024)
    if len(c.body) > limit:
        return allowed | {"payload-too-large"}
    # the limit holds for the provider's answer too: the echo of a long call may pass it
    echo_size = 1000 + 2 * len(path) + 2 * len(c.body) + sum(2 * len(v) for _n, v in headers)
    if echo_size > limit // 2:
        allowed.add("response-too-large")
    return allowed | {None}


def request_hash(method: str, path: str, query: str, body: bytes) -> str:
    digest = hashlib.sha256(
        b"%s\n%s\n%s\n%s" % (method.encode(), path.encode(), query.encode(), body)
    ).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _encode(value: str) -> bytes:
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode()


def send(b: Bus, c: Call) -> None:
    service_id = b.sids.get(c.service) or c.service.removeprefix("raw:")
    target = f"/r1/{service_id}{c.path}" + (f"?{c.query}" if c.query is not None else "")
    auth = _auth_value(c.auth, b.token)
    headers: list[tuple[str, str]] = []
    for name, value in (
        ("Authorization", auth),
        ("GSB-Purpose", c.purpose),
        ("GSB-Subject", c.subject),
        ("GSB-User", c.user),
        ("GSB-Request-Id", c.request_id),
        ("traceparent", c.traceparent),
        ("Content-Type", c.content_type),
    ):
        if value is not None:
            headers.append((name, value))
    if c.duplicate is not None:
        headers.append((c.duplicate, "again"))
    # bytes values go out as they are: obs-text in latin-1, anything else (Persian digits) in UTF-8
    raw_headers = [(n.encode(), _encode(v)) for n, v in headers]
    content: Any = c.body
    if c.chunked and c.body:
        content = iter([c.body[: len(c.body) // 2], c.body[len(c.body) // 2 :]])
    expected = expected_codes(b, c, service_id, c.path, raw_headers)
    try:
        r = b.client.request(
            c.method,
            f"{b.world.url}{target}",
            headers=raw_headers,
            content=content,
            extensions={"target": target.encode()},
        )
    except httpx.TransportError as exc:
        raise AssertionError(f"the bus dropped the connection: {exc!r}") from exc
    check_answer(b, c, r, expected, target, service_id)


def check_answer(
    b: Bus, c: Call, r: httpx.Response, expected: set[str | None], target: str, service_id: str
) -> None:
    where = f"{c!r:.1500} -> {r.status_code} {r.headers.get('gsb-error')} {r.text[:300]}"
    assert r.status_code != 500 and r.status_code < 600, where
    rid = r.headers.get("gsb-request-id")
    assert rid and _is_uuid(rid), where
    code = r.headers.get("gsb-error")
    if c.request_id is not None and code != "bad-request":
        assert rid == str(uuid.UUID(c.request_id.strip())), where
    log_id = r.headers.get("gsb-log-id")
    if code == "log-unavailable":
        raise AssertionError(f"the message log became unavailable: {where}")
    assert log_id is not None and log_id.isdigit(), where
    assert code in expected, f"{where}: expected one of {expected}"
    if service_id == b.sids["limited"] and code in PAST_THE_RATE_LIMIT:
        b.limited_tokens = 0  # this call took the bucket's only token

    if code is not None:  # the bus's own answer
        assert code in BUS_CODES, where
        assert r.status_code == PROBLEMS[code].status, where
        assert r.headers["content-type"] == "application/problem+json", where
        if code in ("rate-limited", "circuit-open"):
            assert r.headers["retry-after"].isdigit(), where
        if code == "unauthenticated":
            assert r.headers["www-authenticate"].lower().startswith("bearer"), where
        if code == "method-not-allowed":
            assert "GET" in r.headers["allow"], where
        if c.method != "HEAD":
            problem = r.json()
            assert problem["code"] == code and problem["status"] == r.status_code, where
            assert problem["type"] == f"urn:gsb:problem:{code}", where
            assert problem["request_id"] == rid, where
            assert problem["title"] and problem["detail"] and problem["detail_fa"], where
        else:
            assert r.content == b"", where
        b.seen.append((int(log_id), rid, r.status_code, code))
        return

    # the provider's answer, passed through
    path = c.path
    query = c.query or ""
    assert r.headers["gsb-request-hash"] == request_hash(c.method, path, query, c.body), where
    if c.method == "OPTIONS":  # the test provider does not implement OPTIONS
        assert r.status_code == 501, where
        b.seen.append((int(log_id), rid, r.status_code, "provider-error"))
        return
    assert r.status_code == 200, where
    assert r.headers["x-provider"] == "echo", where
    b.seen.append((int(log_id), rid, r.status_code, "ok"))
    if c.method == "HEAD":
        assert r.content == b"", where
        return
    seen = r.json()
    assert seen["method"] == c.method, where
    assert seen["path"] == "/echo" + path, where
    assert seen["query"] == query, where
    assert base64.b64decode(seen["body_b64"]) == c.body, where
    h = seen["headers"]
    assert "authorization" not in h and "cookie" not in h, where
    assert h["gsb-client"] == b.world.clients["cons"].id and h["gsb-service"] == service_id, where
    assert h["gsb-request-id"] == rid and h["gsb-assertion"].count(".") == 2, where
    if c.content_type is not None:
        sent_type = c.content_type.encode("latin-1")
        assert h.get("content-type", "").encode("latin-1") == sent_type, where
    version, trace_id, span, _flags = h["traceparent"].split("-")
    assert version == "00" and len(trace_id) == 32 and len(span) == 16, where
    incoming = c.traceparent.strip() if c.traceparent else ""
    if incoming.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-"):
        assert trace_id == "4bf92f3577b34da6a3ce929d0e0e4736", where
    user = (c.user or "").strip()
    if user:
        assert h["gsb-user"].encode("latin-1") == user.encode("latin-1"), where


# -- the properties ---------------------------------------------------------------------


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(call=calls)
def test_any_call_is_answered_by_the_protocol_never_with_a_500_or_a_dropped_connection(
    bus: Bus,
    call: Call,
) -> None:
    send(bus, call)


def _raw(port: int, data: bytes, *, timeout: float = 2.0) -> bytes:
    """Send raw bytes; read until the bus closes, answers in full, or stays silent for a while.

    The connection stays open for writing: a half-close may make a server drop its answer
    (uvicorn closes on EOF), and an incomplete request may be waited on.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            pass  # the bus may close while we are still sending: that is an answer too
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            out += chunk
            head, sep, body = out.partition(b"\r\n\r\n")
            if sep:
                lengths = [
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ]
                if lengths and len(body) >= lengths[0]:
                    break
        return out


def _status_lines(answer: bytes) -> list[int]:
    """The status of every response in the bytes (a body need not end with a line break)."""
    return [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]


def _healthy(b: Bus) -> None:
    assert httpx.get(f"{b.world.url}/healthz", timeout=5).status_code == 200
    r = b.world.call(b.sids["plain"], "/still-there", token=b.token)
    assert r.status_code == 200, r.text


def _line(service: str, rest: bytes = b"") -> bytes:
    return b"/r1/" + service.encode() + rest


RAW_REQUESTS: dict[str, Any] = {
    "garbage request line": lambda s, t: b"GARBAGE\r\n\r\n",
    "binary noise": lambda s, t: bytes(range(256)) * 4,
    "http/0.9": lambda s, t: b"GET " + _line(s) + b"\r\n\r\n",
    "unknown version": lambda s, t: b"GET " + _line(s) + b" HTTP/7.3\r\nHost: x\r\n\r\n",
    "unknown method": lambda s, t: b"BREW " + _line(s) + b" HTTP/1.1\r\nHost: x\r\n" + t + b"\r\n",
    "space in target": lambda s, t: b"GET " + _line(s, b"/a b") + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "control byte in target": lambda s, t: b"GET " + _line(s, b"/\x01") + b" HTTP/1.1\r\n"
    b"Host: x\r\n" + t + b"\r\n",
    "utf-8 in target": lambda s, t: b"GET " + _line(s, "/café/۱".encode()) + b" HTTP/1.1\r\n"
    b"Host: x\r\n" + t + b"\r\n",
    "latin-1 in target": lambda s, t: b"GET "
    + _line(s, b"/\xe9\xff")
    + b" HTTP/1.1\r\nHost: x\r\n"
    + t
    + b"\r\n",
    "nul in header value": lambda s, t: b"GET " + _line(s) + b" HTTP/1.1\r\nHost: x\r\n"
    b"GSB-User: a\x00b\r\n" + t + b"\r\n",
    "control in header value": lambda s, t: b"GET " + _line(s) + b" HTTP/1.1\r\nHost: x\r\n"
    b"GSB-User: a\x01\x7fb\r\n" + t + b"\r\n",
    "space in header name": lambda s, t: b"GET " + _line(s) + b" HTTP/1.1\r\nHost: x\r\n"
    b"GSB User: a\r\n" + t + b"\r\n",
    "no colon in header": lambda s, t: b"GET "
    + _line(s)
    + b" HTTP/1.1\r\nHost: x\r\nnocolon\r\n"
    + t
    + b"\r\n",
    "obsolete line folding": lambda s, t: b"GET " + _line(s) + b" HTTP/1.1\r\nHost: x\r\n"
    b"GSB-User: a\r\n folded\r\n" + t + b"\r\n",
    "bare LF": lambda s, t: b"GET "
    + _line(s)
    + b" HTTP/1.1\nHost: x\n"
    + t.replace(b"\r", b"")
    + b"\n",
    "huge header": lambda s, t: b"GET "
    + _line(s)
    + b" HTTP/1.1\r\nHost: x\r\nX-Big: "
    + b"a" * (1 << 20)
    + b"\r\n"
    + t
    + b"\r\n",
    "many headers": lambda s, t: b"GET "
    + _line(s)
    + b" HTTP/1.1\r\nHost: x\r\n"
    + b"".join(b"X-H%d: v\r\n" % i for i in range(5000))
    + t
    + b"\r\n",
    "huge target": lambda s, t: b"GET " + _line(s, b"/" + b"a" * (1 << 20)) + b" HTTP/1.1\r\n"
    b"Host: x\r\n" + t + b"\r\n",
    "content-length not a number": lambda s, t: b"POST " + _line(s) + b" HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: abc\r\n" + t + b"\r\nxyz",
    "negative content-length": lambda s, t: b"POST " + _line(s) + b" HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: -5\r\n" + t + b"\r\nxyz",
    "two content-lengths": lambda s, t: b"POST " + _line(s) + b" HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 3\r\nContent-Length: 4\r\n" + t + b"\r\nxyzw",
    "content-length and chunked": lambda s, t: b"POST " + _line(s) + b" HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n" + t + b"\r\n3\r\nxyz\r\n0\r\n\r\n",
    "bad chunk size": lambda s, t: b"POST " + _line(s) + b" HTTP/1.1\r\nHost: x\r\n"
    b"Transfer-Encoding: chunked\r\n" + t + b"\r\nzz\r\nxyz\r\n0\r\n\r\n",
    "body shorter than declared": lambda s, t: b"POST " + _line(s) + b" HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 100\r\n" + t + b"\r\nxyz",
    "huge declared body": lambda s, t: b"POST " + _line(s) + b" HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 99999999999999999999\r\n" + t + b"\r\nxyz",
    "truncated request line": lambda s, t: b"GET " + _line(s),
    "pipelined good and bad": lambda s, t: b"GET "
    + _line(s)
    + b" HTTP/1.1\r\nHost: x\r\n"
    + t
    + b"\r\nGARBAGE\r\n\r\n",
}


@pytest.mark.parametrize("kind", list(RAW_REQUESTS))
def test_raw_malformed_http_gets_a_4xx_or_a_closed_connection_and_the_bus_keeps_serving(
    bus: Bus,
    kind: str,
) -> None:
    auth = b"Authorization: Bearer " + bus.token.encode() + b"\r\n"
    data = RAW_REQUESTS[kind](bus.sids["plain"], auth)
    answer = _raw(bus.world.port, data)
    statuses = _status_lines(answer)
    assert all(s < 500 for s in statuses), (kind, answer[:500])
    if answer:
        assert statuses, (kind, answer[:500])
    _healthy(bus)


def _headers_of(answer: bytes) -> dict[bytes, bytes]:
    head = answer.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in head)}


def test_a_request_target_over_64_kib_is_refused_never_forwarded_cut_short(bus: Bus) -> None:
    auth = b"Authorization: Bearer " + bus.token.encode() + b"\r\n"
    data = (
        b"GET " + _line(bus.sids["personal"], b"/" + b"a" * 70_000) + b"?q=1 HTTP/1.1\r\n"
        b"Host: x\r\n"
        + auth
        + b"GSB-Purpose: "
        + PURPOSE.encode()
        + b"\r\nGSB-Subject: "
        + SUBJECT.encode()
        + b"\r\n\r\n"
    )
    answer = _raw(bus.world.port, data)
    statuses = _status_lines(answer)
    assert statuses and all(400 <= s < 500 for s in statuses), answer[:300]
    _healthy(bus)


def test_a_request_with_a_megabyte_of_headers_is_refused_by_the_bus_itself(bus: Bus) -> None:
    data = RAW_REQUESTS["huge header"](
        bus.sids["plain"], b"Authorization: Bearer " + bus.token.encode() + b"\r\n"
    )
    answer = _raw(bus.world.port, data)
    statuses = _status_lines(answer)
    headers = _headers_of(answer)
    # refused by the server layer (no log id) or by the bus (a GSB-Error), not the provider's
    assert not answer or (
        statuses
        and statuses[0] in (400, 413, 431)
        and (b"gsb-error" in headers or b"gsb-log-id" not in headers)
    ), answer[:400]
    _healthy(bus)


def test_a_refusal_for_a_malformed_header_still_carries_the_clients_request_id(bus: Bus) -> None:
    rid = str(uuid.uuid4())
    r = bus.client.get(
        f"{bus.world.url}/r1/{bus.sids['plain']}/x",
        headers=[
            ("Authorization", f"Bearer {bus.token}"),
            ("GSB-Purpose", "p" * 80),
            ("GSB-Request-Id", rid),
        ],
    )
    assert r.headers["gsb-error"] == "bad-request"
    assert r.headers["gsb-request-id"] == rid
    assert r.json()["request_id"] == rid


@pytest.mark.parametrize(
    "second",
    [b"GARBAGE\r\n\r\n", b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n"],
    ids=["garbage", "huge target"],
)
def test_a_pipelined_call_is_answered_before_the_refusal_of_a_malformed_one_after_it(
    bus: Bus,
    second: bytes,
) -> None:
    good = (
        b"GET " + _line(bus.sids["plain"], b"/first") + b" HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + bus.token.encode() + b"\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", bus.world.port), timeout=5) as s:
        s.sendall(good + second)
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                answer += chunk
    statuses = _status_lines(answer)
    assert statuses[:1] == [200] and all(400 <= st < 500 for st in statuses[1:]), statuses
    _healthy(bus)


@pytest.mark.parametrize(
    "header",
    [b"GSB-User: a\x00b", b"X-Big: " + b"a" * (1 << 17)],
    ids=["nul in a value", "headers too large"],
)
def test_a_call_refused_for_unreadable_headers_is_still_in_the_message_log(
    bus: Bus,
    header: bytes,
) -> None:
    before = len(bus.world.log_rows())
    data = (
        b"GET "
        + _line(bus.sids["plain"], b"/unreadable")
        + b" HTTP/1.1\r\nHost: x\r\n"
        + header
        + b"\r\n\r\n"
    )
    statuses = _status_lines(_raw(bus.world.port, data))
    assert statuses and 400 <= statuses[0] < 500
    rows = bus.world.log_rows()[before:]
    assert [(r["method"], r["outcome"]) for r in rows] == [("GET", "bad-request")], rows


def test_the_bus_is_healthy_afterwards_and_its_log_holds_every_exchange_in_one_chain(
    bus: Bus,
) -> None:
    _healthy(bus)
    r = bus.client.get(f"{bus.world.url}/readyz")
    assert r.status_code == 200, r.text
    checks = r.json()["checks"]
    assert checks["database"] and checks["registry"] and checks["log"], checks
    chains = check_log(bus.world.engine)
    assert list(chains) == [""]  # SQLite: one chain, whatever the number of processes
    rows, _seals = chains[""]
    by_seq = {row["seq"]: row for row in rows}
    for seq, rid, status, outcome in bus.seen:
        row = by_seq[seq]
        assert (row["request_id"], row["status"], row["outcome"]) == (rid, status, outcome), row
    assert len(rows) >= len(bus.seen)
    assert len({seq for seq, *_ in bus.seen}) == len(bus.seen)  # one record per exchange
    for row in rows:
        assert row["outcome"] in BUS_CODES | {"ok", "provider-error"}, row
        if row["outcome"] in PROBLEMS:
            assert row["status"] == PROBLEMS[row["outcome"]].status, row
        assert row["subject_ref"] is None or len(row["subject_ref"]) == 64
    assert SUBJECT not in json.dumps(rows, default=str)
    assert bus.token not in json.dumps(rows, default=str)
