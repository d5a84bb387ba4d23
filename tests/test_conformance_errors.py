"""Protocol §4: every row of the error table, against a running bus and a real provider.

Each refusal is checked whole: status, ``application/problem+json``, every body
field, the ``GSB-Error`` header, and the message-log record whose ``seq`` the
response names in ``GSB-Log-Id``. The tests run on both storage backends; one
bus per backend serves the whole module (every test has its own services,
clients or provider subsystems, registered before the bus starts), because a
bus takes about two seconds to start.
"""

from __future__ import annotations

import contextlib
import http.client
import http.cookiejar
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from dargah.core.errors import PROBLEMS
from dargah.registry import members, quotas, services
from dargah.store.tables import message_log
from tests.harness import (
    CONSUMER_LEGAL_ID,
    OTHER_LEGAL_ID,
    PROVIDER_LEGAL_ID,
    PURPOSE,
    SUBJECT,
    World,
    free_port,
    make_world,
)
from tests.providers import Provider

# The protocol's table (§4), written out here rather than read from the code under test.
SPEC_STATUS = {
    "bad-request": 400,
    "unauthenticated": 401,
    "access-denied": 403,
    "purpose-required": 400,
    "purpose-not-allowed": 403,
    "subject-required": 400,
    "subject-invalid": 400,
    "unknown-service": 404,
    "service-disabled": 503,
    "payload-too-large": 413,
    "rate-limited": 429,
    "circuit-open": 503,
    "provider-unavailable": 502,
    "provider-timeout": 504,
    "response-too-large": 502,
    "internal": 500,
}
BAD_SUBJECT = "0499370898"  # one digit off SUBJECT: fails the checksum


# -- helpers shared by the conformance tests ----------------------------------------------

# One client for every call: a new httpx client per call costs ~70 ms (TLS context). It keeps
# no cookies: every bus of the session is on 127.0.0.1, and cookies ignore the port.
HTTP = httpx.Client(
    timeout=30,
    cookies=http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[])),
)


def call(
    w: World,
    service_id: str,
    path: str = "",
    *,
    token: str | None = None,
    method: str = "GET",
    purpose: str | None = PURPOSE,
    subject: str | None = SUBJECT,
    headers: dict[str, Any] | None = None,
    **kw: Any,
) -> httpx.Response:
    """Like ``World.call``, on a shared connection pool."""
    h: dict[str, Any] = {}
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    if purpose is not None:
        h["GSB-Purpose"] = purpose
    if subject is not None:
        h["GSB-Subject"] = subject
    h.update(headers or {})
    return HTTP.request(method, f"{w.url}/r1/{service_id}{path}", headers=h, **kw)


def token(w: World, client: str = "cons") -> str:
    c = w.clients[client]
    r = HTTP.post(
        f"{w.url}/oauth/token",
        data={"grant_type": "client_credentials", "client_id": c.id, "client_secret": c.secret},
    )
    r.raise_for_status()
    return str(r.json()["access_token"])


def rows(engine: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        q = select(message_log).order_by(message_log.c.seq)
        return [dict(r) for r in conn.execute(q).mappings()]


def row_by_seq(engine: Any, log_id: str) -> dict[str, Any]:
    """The record of a ``GSB-Log-Id``: ``{seq}``, or ``{chain}:{seq}`` with several chains."""
    chain, _, seq = log_id.rpartition(":")
    with engine.connect() as conn:
        found = (
            conn.execute(
                select(message_log).where(
                    message_log.c.chain == chain, message_log.c.seq == int(seq)
                )
            )
            .mappings()
            .all()
        )
    assert len(found) == 1, f"no message-log record {log_id}"
    return dict(found[0])


def log_row(engine: Any, r: httpx.Response) -> dict[str, Any]:
    """The message-log record named by the response's GSB-Log-Id."""
    assert len(r.headers.get_list("gsb-log-id")) == 1
    return row_by_seq(engine, r.headers["gsb-log-id"])


def assert_problem(engine: Any, r: httpx.Response, code: str) -> dict[str, Any]:
    """``r`` is the bus's own ``code`` problem, whole; returns its message-log record."""
    status = SPEC_STATUS[code]
    assert r.status_code == status, (r.status_code, r.headers, r.text)
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers.get_list("gsb-error") == [code]
    body = r.json()
    assert set(body) >= {"type", "title", "status", "code", "request_id", "detail", "detail_fa"}
    assert body["type"] == f"urn:gsb:problem:{code}"
    assert body["title"] == PROBLEMS[code].title and body["title"].strip()
    assert body["status"] == status
    assert body["code"] == code
    assert isinstance(body["detail"], str) and body["detail"].strip()
    fa = body["detail_fa"]
    assert isinstance(fa, str) and any("\u0600" <= c <= "\u06ff" for c in fa)
    assert str(uuid.UUID(body["request_id"])) == body["request_id"]
    assert r.headers["gsb-request-id"] == body["request_id"]
    row = log_row(engine, r)
    assert row["outcome"] == code
    assert row["status"] == status
    assert row["request_id"] == body["request_id"]
    return row


def assert_no_internal(engine: Any) -> None:
    bad = [r for r in rows(engine) if r["outcome"] == "internal"]
    assert not bad, bad


def raw_http(port: int, data: bytes, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes (no client-side URL normalisation) and read one response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        resp = http.client.HTTPResponse(s)
        resp.begin()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def raw_request(
    w: World,
    method: str,
    target: str,
    headers: dict[str, str],
    body: bytes = b"",
    timeout: float = 5.0,
) -> tuple[int, dict[str, str], bytes]:
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{w.port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return raw_http(w.port, head + body, timeout)


def provider_subsystem(w: World, code: str) -> str:
    """Another provider subsystem of the provider member: its own circuit breaker."""
    sub = f"{w.member(PROVIDER_LEGAL_ID)}/{code}"
    with w.engine.begin() as conn:
        members.add_subsystem(conn, sub, "test")
    return sub


def add_service_of(w: World, provider: str, code: str, url: str, **kw: Any) -> str:
    sid = f"{provider}/{code}"
    with w.engine.begin() as conn:
        services.add_service(conn, sid, url, "test", **kw)
    return sid


def dead_service(w: World, subsystem: str, code: str = "gone.v1", **kw: Any) -> str:
    """A service of its own provider subsystem whose URL is a closed port (refused)."""
    return add_service_of(
        w, provider_subsystem(w, subsystem), code, f"http://127.0.0.1:{free_port()}", **kw
    )


def auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


@contextlib.contextmanager
def database(kind: str) -> Iterator[str]:
    """'' for SQLite, or the URL of a fresh PostgreSQL schema (as the ``database_url`` fixture)."""
    if kind == "sqlite":
        yield ""
        return
    from tests.conftest import _pg_schema

    with _pg_schema() as url:
        yield url


# -- the module's bus ---------------------------------------------------------------------


class EW:
    """The error world: a running bus, its engine, and what each test calls."""

    def __init__(self, w: World) -> None:
        self.w = w
        self.engine = w.engine
        self.sids: dict[str, str] = {}
        self.tokens: dict[str, str] = {}

    def tok(self, client: str = "cons") -> str:
        if client not in self.tokens:
            self.tokens[client] = token(self.w, client)
        return self.tokens[client]

    def call(self, name: str, path: str = "", **kw: Any) -> httpx.Response:
        kw.setdefault("token", self.tok())
        return call(self.w, self.sids.get(name, name), path, **kw)

    def problem(self, r: httpx.Response, code: str) -> dict[str, Any]:
        return assert_problem(self.engine, r, code)


def _build(w: World) -> EW:
    ew = EW(w)
    s = ew.sids
    url = w.provider_url
    s["personal"] = w.add_service("person-inquiry.v1", personal_data=True)
    s["plain"] = w.add_service("plain.v1")
    s["upload"] = w.add_service("upload.v1", "/status", max_body=1000)
    s["small"] = w.add_service("small.v1", "/status", personal_data=True, max_body=100)
    s["down"] = w.add_service("down.v1", personal_data=True, max_body=100)
    s["toggle"] = w.add_service("toggle.v1", personal_data=True)
    s["removed"] = w.add_service("old-inquiry.v1")
    s["status"] = w.add_service("status.v1", "/status")
    s["big"] = w.add_service("big.v1", "/big", max_body=1000)
    s["endless"] = w.add_service("endless.v1", "/endless", max_body=100_000)
    s["circuit"] = dead_service(w, "dead-one")
    s["refused"] = dead_service(w, "dead-two")
    s["order-dead"] = dead_service(w, "dead-three", max_body=100)
    flaky = provider_subsystem(w, "flaky")
    s["reset"] = add_service_of(w, flaky, "reset.v1", url + "/reset")
    s["cut"] = add_service_of(w, flaky, "cut.v1", url + "/cut")
    s["slow"] = add_service_of(
        w, provider_subsystem(w, "sluggish"), "slow.v1", url + "/slow", timeout_s=0.3
    )
    w.add_client("third", OTHER_LEGAL_ID)  # no grant at all
    w.add_client("limited", CONSUMER_LEGAL_ID)
    w.add_client("limited-two", CONSUMER_LEGAL_ID)
    for sid in s.values():
        w.grant("cons", sid, [PURPOSE, "tax-assessment"])
    w.grant("other", s["personal"])
    w.grant("limited", s["personal"])
    w.grant("limited-two", s["small"])
    w.grant("limited-two", s["down"])
    eng = ew.engine
    with eng.begin() as conn:
        services.remove_service(conn, s["removed"], "test")
        services.update_service(conn, s["down"], {"maintenance": True}, "test")
        quotas.set_quota(conn, w.clients["limited"].id, 0.2, "test", burst=2)
        quotas.set_quota(conn, w.clients["limited-two"].id, 0.01, "test", burst=1)
    return ew


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def ew(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, provider: Provider
) -> Iterator[EW]:
    with database(request.param) as url:
        home: Path = tmp_path_factory.mktemp("errors") / "home"
        w = make_world(home, provider.url, url)
        try:
            e = _build(w)
            w.start()
            yield e
            assert "unexpected error" not in (home / "bus.log").read_text()
            assert_no_internal(e.engine)
        finally:
            w.stop()
            w.engine.dispose()


# -- one test per row of the table --------------------------------------------------------


def test_a_malformed_identifier_or_header_is_a_bad_request(ew: EW) -> None:
    sid = ew.sids["personal"]
    bad_legal_id = sid.replace(PROVIDER_LEGAL_ID, PROVIDER_LEGAL_ID[:-1] + "0")
    row = ew.problem(ew.call(bad_legal_id, "/x"), "bad-request")
    assert row["client"] is None  # refused before authentication
    r = ew.call("personal", "/x", headers={"GSB-Request-Id": "not-a-uuid"})
    ew.problem(r, "bad-request")
    assert "GSB-Request-Id" in r.json()["detail"]
    r = ew.call("personal", "/x", headers={"GSB-Purpose": PURPOSE, "gsb-purpose": "twice"})
    ew.problem(r, "bad-request")
    assert ew.call("personal", "/x").status_code == 200


def test_no_forged_or_altered_token_is_unauthenticated(ew: EW) -> None:
    tok = ew.tok()
    head, payload, sig = tok.split(".")
    for bad in (
        None,
        "garbage",
        f"{head}.{payload}.{sig[:-2]}AA",
        f"{head}.{payload[:-2]}xx.{sig}",
        f"eyJhbGciOiJub25lIn0.{payload}.",
    ):
        r = ew.call("personal", "/x", token=bad)
        row = ew.problem(r, "unauthenticated")
        assert row["client"] is None
        assert "bearer" in r.headers["www-authenticate"].lower()
    ew.problem(
        ew.call("personal", "/x", headers={"Authorization": f"Basic {tok}"}), "unauthenticated"
    )
    hdrs = {"Authorization": "Bearer ", "GSB-Purpose": PURPOSE, "GSB-Subject": SUBJECT}
    status, headers, _ = raw_request(ew.w, "GET", f"/r1/{ew.sids['personal']}/x", hdrs)
    assert status == 401 and headers["gsb-error"] == "unauthenticated"
    assert ew.call("personal", "/x").status_code == 200


def test_a_client_without_a_grant_is_access_denied(ew: EW) -> None:
    row = ew.problem(ew.call("plain", "/x", token=ew.tok("other")), "access-denied")
    assert row["client"] == ew.w.clients["other"].id and row["service"] == ew.sids["plain"]


def test_a_personal_data_call_without_a_purpose_is_purpose_required(ew: EW) -> None:
    row = ew.problem(ew.call("personal", "/x", purpose=None), "purpose-required")
    assert row["purpose"] is None and row["client"] == ew.w.clients["cons"].id


def test_a_purpose_outside_the_grant_is_purpose_not_allowed(ew: EW) -> None:
    row = ew.problem(ew.call("personal", "/x", purpose="marketing"), "purpose-not-allowed")
    assert row["purpose"] == "marketing"
    # also on a service without personal data: a purpose, when sent, must be in the grant
    ew.problem(ew.call("plain", "/x", purpose="marketing"), "purpose-not-allowed")
    assert ew.call("personal", "/x", purpose="tax-assessment").status_code == 200


def test_a_personal_data_call_without_a_subject_is_subject_required(ew: EW) -> None:
    row = ew.problem(ew.call("personal", "/x", subject=None), "subject-required")
    assert row["subject_ref"] is None


def test_a_subject_failing_the_checksum_is_subject_invalid(ew: EW) -> None:
    persian_digits = "۰۴۹۹۳۷۰۸۹۹".encode()
    for subject in (BAD_SUBJECT, "1111111111", "123", "04993708990", persian_digits):
        r = ew.call("personal", "/x", subject=None, headers={"GSB-Subject": subject})
        row = ew.problem(r, "subject-invalid")
        assert row["subject_ref"] is None
    # validated on a service without personal data too
    ew.problem(ew.call("plain", "/x", subject=BAD_SUBJECT), "subject-invalid")


def test_a_well_formed_but_unregistered_service_is_unknown_service(ew: EW) -> None:
    row = ew.problem(ew.call(ew.w.sid("no-such-service.v1"), "/x"), "unknown-service")
    assert row["client"] == ew.w.clients["cons"].id
    ew.problem(ew.call("removed", "/x"), "unknown-service")


def test_a_service_in_maintenance_is_service_disabled(ew: EW) -> None:
    ew.problem(ew.call("down", "/x"), "service-disabled")
    # switched while the bus runs: it takes effect within the snapshot refresh
    assert ew.call("toggle", "/x").status_code == 200
    with ew.engine.begin() as conn:
        services.update_service(conn, ew.sids["toggle"], {"maintenance": True}, "test")
    deadline = time.monotonic() + 5
    while (r := ew.call("toggle", "/x")).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    ew.problem(r, "service-disabled")


def test_a_body_over_the_limit_is_payload_too_large_declared_or_chunked(ew: EW) -> None:
    w, sid = ew.w, ew.sids["upload"]
    assert ew.call("upload", "/200", method="POST", content=b"a" * 1000).status_code == 200
    # A declared Content-Length over the limit is refused before the body is read: no body is
    # ever sent here, so an answer at all proves the bus did not wait for it.
    started = time.monotonic()
    status, headers, _ = raw_request(
        w,
        "POST",
        f"/r1/{sid}/x",
        {**auth(ew.tok()), "GSB-Purpose": PURPOSE, "Content-Length": str(50 * 1024 * 1024)},
        timeout=3,
    )
    assert time.monotonic() - started < 2
    assert status == 413 and headers["gsb-error"] == "payload-too-large"
    assert headers["content-type"] == "application/problem+json"
    row = row_by_seq(ew.engine, headers["gsb-log-id"])
    assert row["outcome"] == "payload-too-large" and row["request_bytes"] == 0
    # A chunked body (no Content-Length) is counted as it arrives.
    r = ew.call("upload", "/x", method="POST", content=iter([b"b" * 400] * 4))
    assert "content-length" not in r.request.headers
    ew.problem(r, "payload-too-large")
    # And a declared one through an ordinary client.
    ew.problem(ew.call("upload", "/x", method="PUT", content=b"c" * 1001), "payload-too-large")


def test_a_client_over_its_quota_is_rate_limited_with_retry_after(ew: EW) -> None:
    tok = ew.tok("limited")
    assert [ew.call("personal", "/x", token=tok).status_code for _ in range(2)] == [200, 200]
    r = ew.call("personal", "/x", token=tok)
    ew.problem(r, "rate-limited")
    assert 1 <= int(r.headers["retry-after"]) <= 5
    # a client with no quota is not limited
    assert all(ew.call("personal", "/x").status_code == 200 for _ in range(4))


def test_a_failing_provider_opens_the_circuit_with_retry_after(ew: EW) -> None:
    for _ in range(5):  # the default breaker: 5 failures in a row
        ew.problem(ew.call("circuit", "/x"), "provider-unavailable")
    started = time.monotonic()
    r = ew.call("circuit", "/x")
    assert time.monotonic() - started < 1
    ew.problem(r, "circuit-open")
    assert 1 <= int(r.headers["retry-after"]) <= 5
    # kept per provider subsystem: other providers are not affected
    assert ew.call("personal", "/x").status_code == 200
    ew.problem(ew.call("refused", "/x"), "provider-unavailable")


def test_a_refused_reset_or_cut_connection_is_provider_unavailable(ew: EW) -> None:
    for name in ("refused", "reset", "cut"):
        row = ew.problem(ew.call(name), "provider-unavailable")
        assert row["service"] == ew.sids[name] and row["response_bytes"] > 0


def test_a_provider_slower_than_the_service_timeout_is_provider_timeout(ew: EW) -> None:
    started = time.monotonic()
    r = ew.call("slow", "/2")
    assert time.monotonic() - started < 1.5
    ew.problem(r, "provider-timeout")


def test_a_provider_response_over_the_limit_is_response_too_large(ew: EW) -> None:
    ok = ew.call("big", "/1000")
    assert ok.status_code == 200 and len(ok.content) == 1000
    ew.problem(ew.call("big", "/1001"), "response-too-large")
    ew.problem(ew.call("endless"), "response-too-large")


def test_internal_is_never_produced_by_anything_a_client_sends(ew: EW) -> None:
    w, tok = ew.w, ew.tok()
    seen: list[int] = []
    odd_headers: list[dict[str, Any]] = [
        {"GSB-Purpose": "x" * 5000},
        {"GSB-User": "u" * 300},
        {"GSB-User": "کاربر".encode()},
        {"GSB-Purpose": "هدف".encode()},
        {"GSB-Request-Id": ""},
        {"GSB-Request-Id": "{" + str(uuid.uuid4()) + "}"},
        {"traceparent": "garbage"},
        {"traceparent": "00-" + "0" * 32 + "-" + "0" * 16 + "-01"},
        {"tracestate": "a=b" * 200},
        {"Connection": "x-gone, , keep-alive", "x-gone": "1"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer " + "a." * 500},
        {"Authorization": b"Bearer \xff\xfe.."},
        {"Content-Type": b"\xff"},
        {"Cookie": "a=b"},
        {"Expect": "100-continue"},
    ]
    for h in odd_headers:
        for name in ("personal", "plain"):
            r = ew.call(name, "/x?a=%ZZ&b", headers=h)
            seen.append(r.status_code)
            if "gsb-error" in r.headers:
                ew.problem(r, r.headers["gsb-error"])
    sid = ew.sids["personal"]
    targets = [
        "/r1/",
        "/r1//////",
        "/r1/TEST",
        "/r1/TEST/GOV",
        f"/r1/{sid}/%00",
        f"/r1/{sid}/%2e%2e/x",
        f"/r1/{sid}/a/../../b",
        f"/r1/{sid}/./x",
        f"/r1/{sid}?" + "q" * 10000,
        "/r1/" + "A" * 9000,
        f"/r1/{sid}/\xd8\xa7",
        "/r1/t/GOV/10100387143/prov/x",
        f"/r1/{sid}//x",
        f"/r1/{sid}/%",
    ]
    hdrs = {**auth(tok), "GSB-Purpose": PURPOSE, "GSB-Subject": SUBJECT}
    for target in targets:
        for method in ("GET", "POST", "OPTIONS", "TRACE"):
            status, _, _ = raw_request(w, method, target, hdrs)
            seen.append(status)
    for body in (b"", b"\x00" * 10, "متن".encode()):
        seen.append(ew.call("plain", "/x", method="PATCH", content=body, purpose=None).status_code)
    assert 500 not in seen, seen
    assert_no_internal(ew.engine)
    assert "unexpected error" not in (w.settings.home / "bus.log").read_text()


# -- beyond the table: provider errors and the order of the checks ------------------------


def test_a_providers_own_error_passes_through_unchanged_without_gsb_error(ew: EW) -> None:
    for code in (404, 500, 503):
        r = ew.call("status", f"/{code}")
        assert r.status_code == code
        assert r.text == f"provider says {code}"
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        assert r.headers["x-provider"] == "status"
        assert "gsb-error" not in r.headers  # the provider's spoofed one is dropped too
        assert r.headers.get_list("gsb-log-id") == [r.headers["gsb-log-id"]]
        assert r.headers["gsb-log-id"] != "999999"
        row = log_row(ew.engine, r)
        assert row["outcome"] == "provider-error" and row["status"] == code
    # the provider's own errors do not open the circuit
    for _ in range(6):
        assert ew.call("status", "/500").status_code == 500
    assert ew.call("status", "/200").status_code == 200


def test_checks_run_in_the_protocols_order(ew: EW) -> None:
    w = ew.w
    unknown = w.sid("no-such-service.v1")
    bad_id = f"TEST/GOV/12345678901/prov/{'x' * 3}"
    limited = ew.tok("limited-two")

    def expect(code: str, name: str, **kw: Any) -> None:
        ew.problem(ew.call(name, "/x", **kw), code)

    # well-formedness comes before authentication
    expect("bad-request", bad_id, token=None)
    expect("bad-request", "personal", token="forged", headers={"GSB-Request-Id": "nope"})
    # authentication before the service is looked up, and before the grant
    expect("unauthenticated", unknown, token="forged")
    expect("unauthenticated", unknown, token=None)
    expect("unauthenticated", "personal", token=None, purpose=None, subject=BAD_SUBJECT)
    # the service before the grant
    expect("unknown-service", unknown, token=ew.tok("third"), purpose=None)
    # the grant before purpose and subject
    expect("access-denied", "personal", token=ew.tok("third"), purpose=None, subject=None)
    # purpose before subject
    expect("purpose-required", "personal", purpose=None, subject=BAD_SUBJECT)
    expect("purpose-not-allowed", "personal", purpose="marketing", subject=None)
    # subject before maintenance
    expect("subject-required", "down", subject=None)
    expect("subject-invalid", "down", subject=BAD_SUBJECT)
    # maintenance before the rate limit and the body size
    assert ew.call("small", "/200", token=limited).status_code == 200  # its one token
    expect("service-disabled", "down", token=limited, method="POST", content=b"x" * 1000)
    # the rate limit before the body size
    expect("rate-limited", "small", token=limited, method="POST", content=b"x" * 1000)
    # the body size before the provider
    expect("payload-too-large", "order-dead", method="POST", content=b"x" * 1000)
    expect("provider-unavailable", "order-dead")
