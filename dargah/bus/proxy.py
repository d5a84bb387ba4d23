"""The path of one ``/r1/`` call: parse → authenticate → authorise → forward → log → respond.

Checks run in the protocol's order (§4); the first that fails answers. Every
call that got this far is recorded in the message log, refused or not, and
no response leaves before its record is committed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dargah.bus.limits import monotonic, retry_after
from dargah.bus.log.writer import LogUnavailable
from dargah.bus.request import (
    HOP_BY_HOP,
    ParsedCall,
    ParseError,
    parse_headers,
    request_id_of,
    split_target,
)
from dargah.bus.runtime import BusRuntime
from dargah.bus.upstream import UpstreamError
from dargah.core.clock import now_rfc3339
from dargah.core.errors import PROBLEM_CONTENT_TYPE, PROBLEMS, problem_body, problem_bytes

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# The provider's Date too: the server adds the bus's own, and a response has one Date.
_STRIP_FROM_PROVIDER = HOP_BY_HOP | {
    b"content-length",
    b"date",
    b"gsb-error",
    b"gsb-log-id",
    b"gsb-request-id",
    b"gsb-request-hash",
}
# Where the server puts the x5t#S256 of the client certificate the connection presented.
CLIENT_CERT = "dargah.client_cert_s256"
_CIRCUIT_FAILURES = frozenset({"provider-unavailable", "provider-timeout"})
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})
_ALLOW = [(b"allow", b"GET, HEAD, POST, PUT, PATCH, DELETE")]


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
            raise Refusal(
                "payload-too-large",
                f"the request body is over the service's limit of {limit} bytes",
            )
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
            raise Refusal(
                "payload-too-large",
                f"the request body is over the service's limit of {limit} bytes",
            )
        chunks.append(chunk)
        more = message.get("more_body", False)
        if not more:
            return b"".join(chunks)
        message = await receive()


class ProxyHandler:
    def __init__(self, rt: BusRuntime) -> None:
        self.rt = rt
        self._claims: dict[tuple[str, str, str | None, bool], bytes] = {}

    def _claims_head(
        self, client: str, service_id: str, purpose: str | None, subject_present: bool
    ) -> bytes:
        """The GSB-Assertion's claims that are the same for every call of a client to a service
        with a purpose, as the start of a JSON object (built once; ``rid``, ``iat`` and ``exp``
        follow per call)."""
        key = (client, service_id, purpose, subject_present)
        head = self._claims.get(key)
        if head is None:
            claims = {
                "iss": self.rt.public_url,
                "sub": client,
                "aud": service_id,
                "purpose": purpose,
                "subject_present": subject_present,
            }
            head = json.dumps(claims, separators=(",", ":"))[:-1].encode() + b","
            if len(self._claims) >= 10_000:
                self._claims.clear()
            self._claims[key] = head
        return head

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rt = self.rt
        started = time.perf_counter()
        ts = now_rfc3339()
        method: str = scope["method"]
        raw = scope.get("raw_path")
        raw_path = raw.decode("latin-1") if raw else scope["path"]
        query: bytes = scope.get("query_string", b"")
        call = ParsedCall()
        rec = new_record(ts, method, raw_path, query)
        extra_headers: list[tuple[bytes, bytes]] = []
        body = b""
        try:
            if not rt.writer.healthy:
                raise LogUnavailable("the message log is not writable")
            try:
                if "dargah.malformed" in scope:  # the server could not read the headers
                    raise ParseError(scope["dargah.malformed"])
                parse_headers(scope["headers"], call)
                rec["request_id"] = call.request_id
                if rt.tracer is not None:  # not record fields: neither stored nor hashed
                    rec["_traceparent"], rec["_incoming_trace"] = (
                        call.traceparent,
                        call.incoming_trace,
                    )
                service_id, path = split_target(raw_path)
            except ParseError as exc:
                # A malformed header may have stopped parsing before the id was set or generated.
                call.request_id = (
                    call.request_id or request_id_of(scope["headers"]) or str(uuid.uuid4())
                )
                rec["request_id"] = call.request_id
                raise Refusal("bad-request", str(exc)) from None
            rec["service"], rec["path"] = service_id, path
            if method not in METHODS:
                raise Refusal(
                    "method-not-allowed",
                    f"method {method} is not one of the protocol's",
                    headers=_ALLOW,
                )
            rec["purpose"], rec["user"] = call.purpose, call.user
            if call.subject is not None:
                rec["subject_ref"] = rt.subject_ref(call.subject)
            snap = rt.snapshot
            # authentication
            auth = call.authorization
            if auth is None or not auth[:7].lower() == b"bearer ":
                raise Refusal(
                    "unauthenticated",
                    "an Authorization: Bearer token is required",
                    headers=[(b"www-authenticate", b'Bearer realm="gsb"')],
                )
            claims = rt.verifier.verify(auth[7:].strip().decode("latin-1"), snap, time.time())
            if claims is None:
                raise Refusal(
                    "unauthenticated",
                    "the token is invalid, expired or revoked",
                    headers=[(b"www-authenticate", b'Bearer error="invalid_token"')],
                )
            if claims.cnf is not None and claims.cnf != scope.get(CLIENT_CERT):
                raise Refusal(
                    "unauthenticated",
                    "the token is bound to a client certificate this connection did not present",
                    headers=[(b"www-authenticate", b'Bearer error="invalid_token"')],
                )
            client = rec["client"] = claims.client
            # the service, the grant, purpose and subject
            svc = snap.services.get(service_id)
            if svc is None or not svc.active:
                raise Refusal("unknown-service", f"there is no bus service {service_id}")
            purposes = snap.grants.get((client, service_id))
            if purposes is None:
                raise Refusal("access-denied", f"{client} has no grant for {service_id}")
            if call.purpose is None:
                if svc.personal_data:
                    raise Refusal(
                        "purpose-required", "this service handles personal data: send GSB-Purpose"
                    )
            elif call.purpose not in purposes:
                raise Refusal(
                    "purpose-not-allowed",
                    f"purpose {call.purpose!r} is not in the grant ({', '.join(sorted(purposes))})",
                )
            if call.subject is None:
                if svc.personal_data:
                    raise Refusal(
                        "subject-required", "this service handles personal data: send GSB-Subject"
                    )
            elif rec["subject_ref"] is None:
                raise Refusal("subject-invalid", "GSB-Subject is not a valid national code")
            if svc.maintenance:
                raise Refusal("service-disabled", f"{service_id} is in maintenance")
            now = monotonic()
            quota = snap.quotas.get((client, None))
            if quota is not None:
                wait = await rt.limiter.take(client, quota, now)
                if wait:
                    raise Refusal(
                        "rate-limited",
                        "the client is over its quota",
                        headers=[(b"retry-after", retry_after(wait).encode())],
                    )
            quota = snap.quotas.get((client, service_id))
            if quota is not None:
                wait = await rt.limiter.take(f"{client}|{service_id}", quota, now)
                if wait:
                    raise Refusal(
                        "rate-limited",
                        "the client is over its quota for this service",
                        headers=[(b"retry-after", retry_after(wait).encode())],
                    )
            if call.content_length is not None and call.content_length > svc.max_body:
                raise Refusal(
                    "payload-too-large",
                    f"the request body is over the service's limit of {svc.max_body} bytes",
                )
            body = await read_body(receive, svc.max_body, svc.timeout_s)
            rec["request_bytes"] = len(body)
            digest = request_digest(method, path, query, body)
            rec["request_hash"] = digest.hex()
            extra_headers.append(
                (b"gsb-request-hash", base64.urlsafe_b64encode(digest).rstrip(b"="))
            )
            wait = rt.breaker.allow(svc.provider, now)
            if wait:
                raise Refusal(
                    "circuit-open",
                    f"provider {svc.provider} is failing; calls are paused",
                    headers=[(b"retry-after", retry_after(wait).encode())],
                )
            # forward
            headers = call.forward
            headers += [
                (b"gsb-client", client.encode()),
                (b"gsb-service", service_id.encode()),
                (b"gsb-request-id", call.request_id.encode()),
                (b"traceparent", call.traceparent.encode()),
                (b"forwarded", rt.client_addresses.forwarded(*_peer(scope), call.via)),
            ]
            if call.tracestate is not None:
                headers.append((b"tracestate", call.tracestate))
            if call.purpose is not None:
                headers.append((b"gsb-purpose", call.purpose.encode("latin-1")))
            if call.subject is not None:
                headers.append((b"gsb-subject", call.subject.encode()))
            if call.user is not None:
                headers.append((b"gsb-user", call.user.encode("latin-1")))
            iat = int(time.time())
            head = self._claims_head(client, service_id, call.purpose, call.subject is not None)
            headers.append(
                (
                    b"gsb-assertion",
                    rt.assertion_signer.sign_json(
                        b'%s"rid":"%s","iat":%d,"exp":%d}'
                        % (head, call.request_id.encode(), iat, iat + rt.settings.assertion_ttl)
                    ),
                )
            )
            target = (svc.base_path + path) or "/"
            if query:
                target += "?" + query.decode("latin-1")
            pool = rt.pools.get(svc.provider, svc.host, svc.port, svc.scheme == "https")
            try:
                resp = await pool.request(
                    method, target.encode("latin-1"), headers, body, svc.max_body, svc.timeout_s
                )
            except UpstreamError as exc:
                if exc.code in _CIRCUIT_FAILURES:
                    rt.breaker.failure(svc.provider, monotonic())
                else:
                    rt.breaker.success(svc.provider)
                raise Refusal(exc.code, exc.detail) from None
            rt.breaker.success(svc.provider)
            out_headers = [(n, v) for n, v in resp.headers if n not in _STRIP_FROM_PROVIDER]
            rec["status"] = resp.status
            rec["outcome"] = "ok" if resp.status < 400 else "provider-error"
            rec["response_hash"] = hashlib.sha256(resp.body).hexdigest()
            rec["response_bytes"] = len(resp.body)
            body_rec = _encrypt(rt, call.request_id, body, resp.body) if svc.store_bodies else None
            length = None
            if method == "HEAD":  # the length a GET would have (RFC 9110 §8.6), not 0
                length = next((v for n, v in resp.headers if n == b"content-length"), None)
                if length is not None and not length.isdigit():
                    length = None
            await self._finish(
                send,
                rec,
                started,
                resp.status,
                out_headers + extra_headers,
                resp.body,
                call.request_id,
                body_rec,
                length,
            )
        except Refusal as r:
            await self._refuse(
                send,
                rec,
                started,
                r.code,
                r.detail,
                r.detail_fa,
                r.headers + extra_headers,
                call.request_id,
            )
        except LogUnavailable as exc:
            await send_problem(
                send,
                "log-unavailable",
                f"the message log cannot be written ({exc})",
                call.request_id or rec["request_id"],
                [],
            )

    async def _refuse(
        self,
        send: Send,
        rec: dict[str, Any],
        started: float,
        code: str,
        detail: str,
        detail_fa: str | None,
        headers: list[tuple[bytes, bytes]],
        request_id: str,
    ) -> None:
        rec["request_id"] = rec["request_id"] or request_id
        body = problem_bytes(problem_body(code, detail, rec["request_id"], detail_fa))
        status = PROBLEMS[code].status
        rec["status"], rec["outcome"] = status, code
        rec["response_hash"] = hashlib.sha256(body).hexdigest()
        rec["response_bytes"] = len(body)
        hdrs = [
            (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
            (b"gsb-error", code.encode()),
            *headers,
        ]
        await self._finish(send, rec, started, status, hdrs, body, rec["request_id"], None)

    async def _finish(
        self,
        send: Send,
        rec: dict[str, Any],
        started: float,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        request_id: str,
        body_rec: tuple[str, bytes, bytes | None, bytes | None] | None,
        length: bytes | None = None,
    ) -> None:
        rt = self.rt
        elapsed = time.perf_counter() - started
        rec["duration_us"] = int(elapsed * 1_000_000)
        seq = await rt.writer.append(rec, body_rec)
        if rt.tracer is not None and "_traceparent" in rec:
            end_ns = time.time_ns()
            rt.tracer.record(
                rec,
                rec["_traceparent"],
                rec["_incoming_trace"],
                end_ns - int((time.perf_counter() - started) * 1e9),
                end_ns,
            )
        # Only registered services get a series of their own: ids a client makes up do not.
        known = rec["service"] if rec["service"] in rt.snapshot.services else None
        rt.metrics.observe(
            rec["client"],
            known,
            rec["outcome"],
            time.perf_counter() - started,
            rec["request_bytes"],
            len(body),
        )
        headers.append((b"gsb-request-id", request_id.encode()))
        headers.append((b"gsb-log-id", rt.writer.log_id(seq).encode()))
        headers.append((b"content-length", length or str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _peer(scope: Scope) -> tuple[str | None, str]:
    client = scope.get("client")
    return (client[0] if client else None), scope.get("scheme", "http")


def _encrypt(
    rt: BusRuntime, request_id: str, request: bytes, response: bytes
) -> tuple[str, bytes, bytes | None, bytes | None]:
    kid, key = rt.body_key
    aes = AESGCM(key)
    n1, n2 = os.urandom(12), os.urandom(12)
    aad = request_id.encode()
    return kid, n1 + n2, aes.encrypt(n1, request, aad), aes.encrypt(n2, response, aad)


async def send_problem(
    send: Send, code: str, detail: str, request_id: str | None, headers: list[tuple[bytes, bytes]]
) -> None:
    """A problem response with no log record (only when the log itself is down)."""
    body = problem_bytes(problem_body(code, detail, request_id))
    hdrs = [
        (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
        (b"gsb-error", code.encode()),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    if request_id:
        hdrs.append((b"gsb-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": PROBLEMS[code].status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})
