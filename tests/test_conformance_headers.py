"""Protocol §3: one test per header rule, on what the client sends, the provider receives and
the client gets back. One bus (SQLite) serves the module; services and grants are registered
before it starts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select

from dargah.bus.log.chain import log_id
from dargah.store.tables import bus_keys
from tests.harness import PROVIDER_LEGAL_ID, PURPOSE, SUBJECT, World, make_world
from tests.providers import Provider
from tests.test_conformance_errors import (
    BAD_SUBJECT,
    HTTP,
    add_service_of,
    assert_problem,
    call,
    log_row,
    provider_subsystem,
    raw_request,
    row_by_seq,
    token,
)

OTHER_SUBJECT = "0013542419"  # another checksum-valid national code
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


class HW:
    def __init__(self, w: World) -> None:
        self.w = w
        self.servers: list[socket.socket] = []
        self.engine = w.engine
        self.personal = w.add_service("person-inquiry.v1", personal_data=True)
        self.plain = w.add_service("plain.v1")
        self.redirect = w.add_service("redirect.v1", "/redirect")
        self.big = w.add_service("big.v1", "/big")
        self.closing = add_service_of(
            w, provider_subsystem(w, "old-school"), "closing.v1", closing_provider(self)
        )
        w.grant("cons", self.personal, [PURPOSE, "tax-assessment"])
        w.grant("cons", self.plain)
        w.grant("cons", self.redirect)
        w.grant("cons", self.big)
        w.grant("cons", self.closing)
        url = w.provider_url
        self.busy = add_service_of(w, provider_subsystem(w, "busy"), "slow.v1", url + "/slow")
        self.idle = add_service_of(w, provider_subsystem(w, "idle"), "fast.v1", url + "/echo")
        w.grant("cons", self.busy)
        w.grant("cons", self.idle)
        self.ipv6 = self.ipv6_url = ""
        if ipv6_loopback():
            self.ipv6_url = closing_provider(self, "::1")
            self.ipv6 = add_service_of(w, provider_subsystem(w, "six"), "six.v1", self.ipv6_url)
            w.grant("cons", self.ipv6)
        with self.engine.connect() as conn:
            q = select(bus_keys.c.private_pem).where(bus_keys.c.use == "subject")
            self.subject_key = bytes.fromhex(conn.execute(q).scalar_one())
        self._tok = ""

    @property
    def tok(self) -> str:
        if not self._tok:
            self._tok = token(self.w)
        return self._tok

    def call(self, sid: str, path: str = "", **kw: Any) -> httpx.Response:
        kw.setdefault("token", self.tok)
        return call(self.w, sid, path, **kw)

    def echo(self, sid: str, path: str = "", **kw: Any) -> tuple[httpx.Response, dict[str, Any]]:
        """A call to an echo service: the response and what the provider received."""
        r = self.call(sid, path, **kw)
        assert r.status_code == 200, r.text
        assert r.headers["x-provider"] == "echo"
        return r, r.json()

    def subject_ref(self, code: str) -> str:
        return hmac.new(self.subject_key, code.encode(), hashlib.sha256).hexdigest()


def closing_provider(h: HW, host: str = "127.0.0.1") -> str:
    """A provider whose answers have no length: each body ends when it closes the connection
    (HTTP/1.0 style, or HTTP/1.1 with ``Connection: close``); ``/host`` answers the Host header."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    srv = socket.create_server((host, 0), family=family)
    h.servers.append(srv)

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if b" /v10" in data:
                    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nbody of 1.0")
                    continue
                body = b"body until close"
                if b" /host" in data:
                    body = re.search(rb"\r\nhost: *([^\r]*)", data, re.I).group(1)  # type: ignore[union-attr]
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    b"Connection: close\r\n\r\n" + body
                )

    threading.Thread(target=serve, daemon=True).start()
    name = f"[{host}]" if ":" in host else host
    return f"http://{name}:{srv.getsockname()[1]}"


def ipv6_loopback() -> bool:
    try:
        with socket.create_server(("::1", 0), family=socket.AF_INET6):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def hw(tmp_path_factory: pytest.TempPathFactory, provider: Provider) -> Iterator[HW]:
    w = make_world(tmp_path_factory.mktemp("headers") / "home", provider.url)
    h = HW(w)
    try:
        w.start(DARGAH_PROVIDER_CONNECTIONS="1")  # one connection per provider subsystem
        yield h
    finally:
        w.stop()
        for srv in h.servers:
            srv.close()


def once(seen: dict[str, Any], name: str) -> str:
    """The value of a header the provider received exactly once."""
    values = [v for k, v in seen["header_list"] if k == name]
    assert len(values) == 1, (name, values)
    return str(values[0])


def request_hash(method: str, path: bytes, query: bytes, body: bytes) -> str:
    digest = hashlib.sha256(b"%s\n%s\n%s\n%s" % (method.encode(), path, query, body)).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# -- Authorization ------------------------------------------------------------------------


def test_authorization_is_required(hw: HW) -> None:
    for sid in (hw.personal, hw.plain):
        r = hw.call(sid, "/x", token=None)
        row = assert_problem(hw.engine, r, "unauthenticated")
        assert row["client"] is None
    assert hw.call(hw.plain, "/x").status_code == 200


# -- GSB-Purpose --------------------------------------------------------------------------


def test_gsb_purpose_is_required_for_personal_data_and_must_be_in_the_grant(hw: HW) -> None:
    assert_problem(hw.engine, hw.call(hw.personal, "/x", purpose=None), "purpose-required")
    assert_problem(
        hw.engine, hw.call(hw.personal, "/x", purpose="marketing"), "purpose-not-allowed"
    )
    for purpose in (PURPOSE, "tax-assessment"):
        r, seen = hw.echo(hw.personal, "/x", purpose=purpose)
        assert once(seen, "gsb-purpose") == purpose
        assert log_row(hw.engine, r)["purpose"] == purpose
    # not required without personal data
    r, seen = hw.echo(hw.plain, "/x", purpose=None, subject=None)
    assert "gsb-purpose" not in seen["headers"]
    assert log_row(hw.engine, r)["purpose"] is None


def test_an_overlong_gsb_purpose_is_a_bad_request_and_an_odd_one_is_not_allowed(hw: HW) -> None:
    for bad in ("x" * 65, "x" * 5000):
        r = hw.call(hw.personal, "/x", headers={"GSB-Purpose": bad}, purpose=None)
        row = assert_problem(hw.engine, r, "bad-request")
        assert row["purpose"] is None  # a refused header is not copied into the log
    for odd in ("Identity Verification", "هدف".encode(), "a,b", "x" * 64):
        r = hw.call(hw.personal, "/x", headers={"GSB-Purpose": odd}, purpose=None)
        assert_problem(hw.engine, r, "purpose-not-allowed")


# -- GSB-Subject --------------------------------------------------------------------------


def test_gsb_subject_is_required_for_personal_data_and_checksum_validated(hw: HW) -> None:
    assert_problem(hw.engine, hw.call(hw.personal, "/x", subject=None), "subject-required")
    assert_problem(hw.engine, hw.call(hw.personal, "/x", subject=BAD_SUBJECT), "subject-invalid")
    for subject in (SUBJECT, OTHER_SUBJECT):
        r, seen = hw.echo(hw.personal, "/x", subject=subject)
        assert once(seen, "gsb-subject") == subject
        row = log_row(hw.engine, r)
        assert row["subject_ref"] == hw.subject_ref(subject)
        assert subject not in json.dumps(row, default=str)


def test_gsb_subject_on_a_non_personal_service_is_still_validated_and_recorded(hw: HW) -> None:
    r, seen = hw.echo(hw.plain, "/x", purpose=None, subject=None)
    assert log_row(hw.engine, r)["subject_ref"] is None
    assert "gsb-subject" not in seen["headers"]
    row = assert_problem(hw.engine, hw.call(hw.plain, "/x", subject=BAD_SUBJECT), "subject-invalid")
    assert row["subject_ref"] is None
    r, seen = hw.echo(hw.plain, "/x", purpose=None, subject=SUBJECT)
    assert once(seen, "gsb-subject") == SUBJECT
    row = log_row(hw.engine, r)
    assert row["subject_ref"] == hw.subject_ref(SUBJECT)  # a reference, never the clear code
    assert SUBJECT not in json.dumps(row, default=str)


# -- GSB-User -----------------------------------------------------------------------------


def test_gsb_user_is_forwarded_and_recorded(hw: HW) -> None:
    r, seen = hw.echo(hw.personal, "/x", headers={"GSB-User": "officer-42@sabt"})
    assert once(seen, "gsb-user") == "officer-42@sabt"
    assert log_row(hw.engine, r)["user"] == "officer-42@sabt"
    r, seen = hw.echo(hw.personal, "/x")
    assert "gsb-user" not in seen["headers"]
    assert log_row(hw.engine, r)["user"] is None


# -- GSB-Request-Id -----------------------------------------------------------------------


def test_gsb_request_id_is_used_when_given(hw: HW) -> None:
    rid = str(uuid.uuid4())
    r, seen = hw.echo(hw.personal, "/x", headers={"GSB-Request-Id": rid})
    assert r.headers["gsb-request-id"] == rid
    assert once(seen, "gsb-request-id") == rid
    assert log_row(hw.engine, r)["request_id"] == rid


def test_gsb_request_id_is_generated_when_absent(hw: HW) -> None:
    r1, seen1 = hw.echo(hw.personal, "/x")
    r2, _ = hw.echo(hw.personal, "/x")
    rid = r1.headers["gsb-request-id"]
    assert str(uuid.UUID(rid)) == rid and rid != r2.headers["gsb-request-id"]
    assert once(seen1, "gsb-request-id") == rid
    assert log_row(hw.engine, r1)["request_id"] == rid


def test_a_malformed_gsb_request_id_is_a_bad_request(hw: HW) -> None:
    for bad in ("not-a-uuid", "1234", str(uuid.uuid4()) + "0"):
        r = hw.call(hw.personal, "/x", headers={"GSB-Request-Id": bad})
        row = assert_problem(hw.engine, r, "bad-request")
        assert row["request_id"] != bad  # a fresh id names the refusal


# -- Trace Context ------------------------------------------------------------------------


def test_traceparent_is_propagated_with_the_same_trace_id(hw: HW) -> None:
    incoming = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    _, seen = hw.echo(
        hw.personal, "/x", headers={"traceparent": incoming, "tracestate": "gsb=1,x=y"}
    )
    version, trace, span, flags = once(seen, "traceparent").split("-")
    assert (version, trace, flags) == ("00", TRACE_ID, "01")
    assert re.fullmatch(r"[0-9a-f]{16}", span) and span != "0" * 16
    assert once(seen, "tracestate") == "gsb=1,x=y"


def test_traceparent_is_created_when_absent(hw: HW) -> None:
    traces = set()
    for _ in range(2):
        _, seen = hw.echo(hw.personal, "/x")
        tp = once(seen, "traceparent")
        m = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]", tp)
        assert m and m.group(1) != "0" * 32 and m.group(2) != "0" * 16
        traces.add(m.group(1))
        assert "tracestate" not in seen["headers"]
    assert len(traces) == 2


# -- what the provider receives -----------------------------------------------------------


def test_the_provider_receives_method_path_query_body_and_end_to_end_headers_only(hw: HW) -> None:
    body = b'{"name":"\xd8\xb9\xd9\x84\xdb\x8c"}'
    status, _, raw = raw_request(
        hw.w,
        "POST",
        f"/r1/{hw.personal}/persons/7/a%2Fb?x=1&y=%20z&e",
        {
            "Authorization": f"Bearer {hw.tok}",
            "GSB-Purpose": PURPOSE,
            "GSB-Subject": SUBJECT,
            "Content-Type": "application/json; charset=utf-8",
            "Content-Length": str(len(body)),
            "Accept": "application/json",
            "X-Custom": "kept",
            "Cookie": "session=secret-cookie",
            "Proxy-Authorization": "Basic c2VjcmV0",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Upgrade": "h2c",
            "Trailer": "X-Checksum",
            "Proxy-Connection": "keep-alive",
            "X-Hop": "listed in Connection",
            "Connection": "close, X-Hop",
        },
        body,
    )
    assert status == 200, raw
    seen = json.loads(raw)
    assert seen["method"] == "POST"
    assert seen["path"] == "/echo/persons/7/a%2Fb"
    assert seen["query"] == "x=1&y=%20z&e"
    assert base64.b64decode(seen["body_b64"]) == body
    h = seen["headers"]
    assert h["content-type"] == "application/json; charset=utf-8"
    assert h["accept"] == "application/json"
    assert h["x-custom"] == "kept"
    assert h["content-length"] == str(len(body))
    assert h["host"] == hw.w.provider_url.removeprefix("http://")
    for gone in (
        "authorization",
        "cookie",
        "proxy-authorization",
        "keep-alive",
        "te",
        "upgrade",
        "trailer",
        "proxy-connection",
        "x-hop",
        "transfer-encoding",
    ):
        assert gone not in h, gone
    assert h.get("connection", "keep-alive").lower() == "keep-alive"  # the bus's own, if any
    assert hw.tok not in raw.decode()


def test_the_provider_receives_the_bus_headers_and_a_verifiable_assertion(hw: HW) -> None:
    rid = str(uuid.uuid4())
    _, seen = hw.echo(hw.personal, "/x", headers={"GSB-Request-Id": rid, "GSB-User": "u-1"})
    client = hw.w.clients["cons"].id
    assert once(seen, "gsb-client") == client
    assert once(seen, "gsb-service") == hw.personal
    assert once(seen, "gsb-request-id") == rid
    assert once(seen, "gsb-purpose") == PURPOSE
    assert once(seen, "gsb-subject") == SUBJECT
    assert once(seen, "gsb-user") == "u-1"
    once(seen, "traceparent")
    claims = verify_assertion(hw, once(seen, "gsb-assertion"), hw.personal)
    assert claims["sub"] == client and claims["aud"] == hw.personal and claims["rid"] == rid
    assert claims["purpose"] == PURPOSE and claims["subject_present"] is True
    assert time.time() < claims["exp"] <= time.time() + 600
    # without purpose or subject the claims say so
    _, seen = hw.echo(hw.plain, "/x", purpose=None, subject=None)
    claims = verify_assertion(hw, once(seen, "gsb-assertion"), hw.plain)
    assert claims["purpose"] is None and claims["subject_present"] is False
    # bound to its service: not valid for another audience
    with pytest.raises(jwt.InvalidAudienceError):
        verify_assertion(hw, once(seen, "gsb-assertion"), hw.personal)


def verify_assertion(hw: HW, assertion: str, audience: str) -> dict[str, Any]:
    jwks = HTTP.get(f"{hw.w.url}/.well-known/jwks.json").json()
    kid = jwt.get_unverified_header(assertion)["kid"]
    [jwk] = [k for k in jwks["keys"] if k["kid"] == kid]
    key = jwt.PyJWK(jwk, algorithm="EdDSA").key
    claims: dict[str, Any] = jwt.decode(
        assertion,
        key,
        algorithms=["EdDSA"],
        audience=audience,
        options={"require": ["sub", "aud", "rid", "exp"]},
    )
    return claims


def test_a_client_cannot_spoof_the_bus_headers(hw: HW) -> None:
    spoofed = {
        "GSB-Client": "TEST/GOV/14007650912/other",
        "GSB-Service": "TEST/GOV/10100387143/prov/other.v1",
        "GSB-Assertion": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        "GSB-Log-Id": "1",
        "GSB-Request-Hash": "x",
        "GSB-Error": "x",
    }
    _, seen = hw.echo(hw.personal, "/x", headers=spoofed)
    assert once(seen, "gsb-client") == hw.w.clients["cons"].id
    assert once(seen, "gsb-service") == hw.personal
    assert once(seen, "gsb-assertion") != spoofed["GSB-Assertion"]
    verify_assertion(hw, once(seen, "gsb-assertion"), hw.personal)
    for name in ("gsb-log-id", "gsb-request-hash", "gsb-error"):
        assert name not in seen["headers"]


# -- what the client receives -------------------------------------------------------------


def test_the_client_receives_request_id_log_id_and_request_hash(hw: HW) -> None:
    body = b'{"a": [1, 2, 3]}'
    r, seen = hw.echo(hw.personal, "/persons/7?b=2&a=%2F1", method="POST", content=body)
    raw_path, _, raw_query = r.request.url.raw_path.partition(b"?")
    path = raw_path.removeprefix(f"/r1/{hw.personal}".encode())
    assert path == b"/persons/7" and raw_query == b"b=2&a=%2F1"
    expected = request_hash("POST", path, raw_query, body)
    assert r.headers["gsb-request-hash"] == expected
    assert "=" not in expected
    row = log_row(hw.engine, r)
    assert log_id(row["chain"], row["seq"]) == r.headers["gsb-log-id"]
    assert row["request_id"] == r.headers["gsb-request-id"]
    assert (
        base64.urlsafe_b64encode(bytes.fromhex(row["request_hash"])).rstrip(b"=").decode()
        == expected
    )
    assert row["request_bytes"] == len(body)
    # no path, no query, no body
    r, seen = hw.echo(hw.personal)
    assert seen["path"] == "/echo" and seen["query"] == ""
    assert r.headers["gsb-request-hash"] == request_hash("GET", b"", b"", b"")
    # a query without a path
    r, seen = hw.echo(hw.personal, "?q=1")
    assert seen["path"] == "/echo" and seen["query"] == "q=1"
    assert r.headers["gsb-request-hash"] == request_hash("GET", b"", b"q=1", b"")
    # log ids increase
    ids = [hw.echo(hw.plain, "/x", purpose=None)[0].headers["gsb-log-id"] for _ in range(3)]
    seqs = [int(i.rpartition(":")[2]) for i in ids]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3


def test_redirects_are_not_followed(hw: HW) -> None:
    r = hw.call(hw.redirect, "", purpose=None, subject=None)
    assert r.status_code == 302
    assert r.headers["location"] == "http://127.0.0.1:9/elsewhere"
    assert "gsb-error" not in r.headers
    assert log_row(hw.engine, r)["status"] == 302


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
def test_every_protocol_method_is_forwarded(hw: HW, method: str) -> None:
    body = b"payload" if method in ("POST", "PUT", "PATCH") else b""
    r = hw.call(hw.personal, "/m", method=method, content=body)
    assert r.status_code == 200, r.text
    assert r.headers["x-provider"] == "echo"
    assert log_row(hw.engine, r)["method"] == method
    if method == "HEAD":
        assert r.content == b""
        return
    seen = r.json()
    assert seen["method"] == method and seen["path"] == "/echo/m"
    assert base64.b64decode(seen["body_b64"]) == body


def test_methods_outside_the_protocol_are_refused(hw: HW) -> None:
    for method in ("OPTIONS", "TRACE", "CONNECT", "PROPFIND"):
        status, headers, raw = raw_request(
            hw.w,
            method,
            f"/r1/{hw.personal}/x",
            {"Authorization": f"Bearer {hw.tok}", "GSB-Purpose": PURPOSE, "GSB-Subject": SUBJECT},
        )
        assert status == 405, (method, status, raw)
        assert headers["gsb-error"] == "method-not-allowed"
        assert headers["content-type"] == "application/problem+json"
        assert set(headers["allow"].replace(" ", "").split(",")) == {
            "GET",
            "HEAD",
            "POST",
            "PUT",
            "PATCH",
            "DELETE",
        }
        row = row_by_seq(hw.engine, headers["gsb-log-id"])
        assert row["outcome"] == "method-not-allowed" and row["method"] == method


def test_malformed_identifiers_in_the_path_are_bad_requests_never_500(hw: HW) -> None:
    good = hw.personal
    legal = PROVIDER_LEGAL_ID
    bad_paths = [
        good.replace(legal, legal[:-1] + str((int(legal[-1]) + 1) % 10)),  # legal ID checksum
        good.replace(legal, legal[:-1]),  # 10 digits
        good.replace("TEST/", "test/", 1),  # instance lowercase
        good.replace("TEST/", "T/", 1),  # instance too short
        good.replace("TEST/", "TOOLONGINST/", 1),  # instance too long
        good.replace("/GOV/", "/XYZ/"),  # member class
        good.replace("/prov/", "/P/"),  # subsystem code
        good.replace("/prov/", "/1prov/"),
        good.replace("/prov/", "/" + "p" * 41 + "/"),
        good.replace("person-inquiry.v1", "Person-Inquiry.v1"),  # service code
        good.replace("person-inquiry.v1", "person-inquiry.v"),
        good.rsplit("/", 1)[0],  # a part missing
        "TEST/GOV/" + legal,
        "",
    ]
    targets = [f"/r1/{p}" for p in bad_paths]
    targets += [
        f"/r1/{good}/a/../b",
        f"/r1/{good}/..",
        f"/r1/{good}/./a",
        f"/r1/{good}/%2e%2e/a",
        f"/r1/{good}/%2E./a",
        f"/r1/{good}/a/..%2Fsecret",
        f"/r1/{good}/..%5Csecret",
    ]
    hdrs = {"Authorization": f"Bearer {hw.tok}", "GSB-Purpose": PURPOSE, "GSB-Subject": SUBJECT}
    for target in targets:
        status, headers, raw = raw_request(hw.w, "GET", target, hdrs)
        assert status == 400, (target, status, raw)
        assert headers["gsb-error"] == "bad-request", target
        assert headers["content-type"] == "application/problem+json"
        problem = json.loads(raw)
        assert problem["code"] == "bad-request" and problem["detail"]
        row = row_by_seq(hw.engine, headers["gsb-log-id"])
        assert row["outcome"] == "bad-request" and row["request_id"] == problem["request_id"]
    # the well-formed one goes through
    status, _, _ = raw_request(hw.w, "GET", f"/r1/{good}/a/b", hdrs)
    assert status == 200


def test_head_answers_carry_the_length_a_get_would_have(hw: HW) -> None:
    r = hw.call(hw.big, "/1234", method="HEAD", purpose=None, subject=None)
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-length"] == "1234"
    r = hw.call(hw.big, "/1234", purpose=None, subject=None)
    assert r.headers["content-length"] == "1234" and len(r.content) == 1234


def test_a_response_has_one_date_header(hw: HW) -> None:
    for r in (
        hw.call(hw.plain, "/x", purpose=None, subject=None),
        hw.call(hw.plain, "/x", token=None),
    ):
        assert len(r.headers.get_list("date")) == 1


def test_a_response_ended_by_the_provider_closing_the_connection_is_complete(hw: HW) -> None:
    for path, body in (("/v11", "body until close"), ("/v10", "body of 1.0")):
        r = hw.call(hw.closing, path, purpose=None, subject=None)
        assert r.status_code == 200, r.text
        assert r.text == body
        assert log_row(hw.engine, r)["outcome"] == "ok"


def test_a_provider_on_an_ipv6_address_gets_a_bracketed_host_header(hw: HW) -> None:
    if not hw.ipv6:
        pytest.skip("no IPv6 loopback here")
    r = hw.call(hw.ipv6, "/host", purpose=None, subject=None)
    assert r.status_code == 200, r.text
    assert r.text == hw.ipv6_url.removeprefix("http://")  # "[::1]:port"


def test_the_connection_limit_is_kept_per_provider_subsystem(hw: HW) -> None:
    """The bus runs with one connection per provider subsystem; "busy" and "idle" are two
    subsystems served by the same host and port."""
    done: dict[str, float] = {}

    def slow(name: str) -> None:
        started = time.monotonic()
        r = hw.call(hw.busy, "/1", purpose=None, subject=None)
        assert r.status_code == 200
        done[name] = time.monotonic() - started

    first = threading.Thread(target=slow, args=("first",))
    first.start()
    time.sleep(0.3)  # the first slow call holds busy's only connection
    second = threading.Thread(target=slow, args=("second",))
    second.start()
    time.sleep(0.1)
    started = time.monotonic()
    r = hw.call(hw.idle, "/x", purpose=None, subject=None)
    idle_took = time.monotonic() - started
    first.join()
    second.join()
    assert r.status_code == 200
    assert idle_took < 0.5, f"another subsystem on the same host waited {idle_took:.2f} s"
    assert done["second"] > 1.3, done  # it waited for busy's one connection
