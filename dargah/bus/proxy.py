"""The path of one ``/r1/`` call: parse → authenticate → authorise → forward → log → respond.

Checks run in the protocol's order (§4); the first that fails answers. Every
call that got this far is recorded in the message log, refused or not, and
no response leaves before its record is committed.

The server hands the bus's ``/r1/`` calls to :meth:`ProxyHandler.direct` as a plain request
object and writes the answer it returns in one piece; the same code serves an ASGI call
(:meth:`ProxyHandler.__call__`). The request and response heads are built as bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
import uuid
from typing import Any

from dargah.bus.calls import (
    CLIENT_CERT,
    Answer,
    AsgiRequest,
    Body,
    CallRequest,
    Receive,
    Refusal,
    Scope,
    Send,
    encrypt,
    lines,
    new_record,
    problem_answer,
    read_body,
    refusal_body,
    refusal_head,
    request_digest,
    send_answer,
    send_problem,
    too_large,
)
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
from dargah.core.clock import rfc3339_ns
from dargah.core.errors import PROBLEMS

__all__ = [
    "CLIENT_CERT",
    "ProxyHandler",
    "Receive",
    "Refusal",
    "Scope",
    "Send",
    "new_record",
    "read_body",
    "send_problem",
]

log = logging.getLogger("dargah.bus")

# The provider's Date too: the server adds the bus's own, and a response has one Date.
_STRIP_FROM_PROVIDER = HOP_BY_HOP | {
    b"content-length",
    b"date",
    b"gsb-error",
    b"gsb-log-id",
    b"gsb-request-id",
    b"gsb-request-hash",
}
_CIRCUIT_FAILURES = frozenset({"provider-unavailable", "provider-timeout"})
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})
_ALLOW = [(b"allow", b"GET, HEAD, POST, PUT, PATCH, DELETE")]
_NO_TOKEN = [(b"www-authenticate", b'Bearer realm="gsb"')]
_BAD_TOKEN = [(b"www-authenticate", b'Bearer error="invalid_token"')]


class _PerGrant:
    """What every call of a client to a service with a purpose shares: the start of the
    assertion's claims and the provider headers that do not change."""

    __slots__ = ("claims", "head", "purpose")

    def __init__(self, claims: bytes, head: bytes, purpose: bytes) -> None:
        self.claims = claims
        self.head = head
        self.purpose = purpose


class ProxyHandler:
    def __init__(self, rt: BusRuntime) -> None:
        self.rt = rt
        self._grants: dict[tuple[str, str, str | None, bool], _PerGrant] = {}

    def _per_grant(
        self, client: str, service_id: str, purpose: str | None, subject_present: bool
    ) -> _PerGrant:
        """The GSB-Assertion's claims that are the same for every call of a client to a service
        with a purpose, as the start of a JSON object (``rid``, ``iat`` and ``exp`` follow per
        call), and the fixed headers to the provider; built once."""
        key = (client, service_id, purpose, subject_present)
        per = self._grants.get(key)
        if per is None:
            claims = {
                "iss": self.rt.public_url,
                "sub": client,
                "aud": service_id,
                "purpose": purpose,
                "subject_present": subject_present,
            }
            per = _PerGrant(
                json.dumps(claims, separators=(",", ":"))[:-1].encode() + b",",
                b"gsb-client: %s\r\ngsb-service: %s\r\n" % (client.encode(), service_id.encode()),
                b"" if purpose is None else b"gsb-purpose: %s\r\n" % purpose.encode("latin-1"),
            )
            if len(self._grants) >= 10_000:
                self._grants.clear()
            self._grants[key] = per
        return per

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_answer(send, await self.direct(AsgiRequest(scope, receive)))

    async def direct(self, req: CallRequest) -> Answer:
        """The answer to one call: (status, header lines, body), its record committed."""
        try:
            rt = self.rt
            started = time.perf_counter()
            now_ns = time.time_ns()
            method = req.method
            raw_path = req.target.decode("latin-1")
            query = req.query
            call = ParsedCall()
            rec = new_record(rfc3339_ns(now_ns), method, raw_path, query)
            extra = b""
            body = b""
            try:
                if not rt.writer.healthy:
                    raise LogUnavailable("the message log is not writable")
                try:
                    if req.malformed is not None:  # the server could not read the headers
                        raise ParseError(req.malformed)
                    parse_headers(req.headers, call, now_ns)
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
                        call.request_id or request_id_of(req.headers) or str(uuid.uuid4())
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
                purpose = rec["purpose"] = call.purpose
                rec["user"] = call.user
                subject = call.subject
                if subject is not None:
                    rec["subject_ref"] = rt.subject_ref(subject)
                snap = rt.snapshot
                # authentication
                auth = call.authorization
                if auth is None or not auth[:7].lower() == b"bearer ":
                    raise Refusal(
                        "unauthenticated",
                        "an Authorization: Bearer token is required",
                        None,
                        _NO_TOKEN,
                    )
                claims = rt.verifier.verify(auth[7:].strip().decode("latin-1"), snap, now_ns / 1e9)
                if claims is None:
                    raise Refusal(
                        "unauthenticated",
                        "the token is invalid, expired or revoked",
                        None,
                        _BAD_TOKEN,
                    )
                if claims.cnf is not None and claims.cnf != req.cert:
                    raise Refusal(
                        "unauthenticated",
                        "the token is bound to a client certificate this connection did not present",
                        None,
                        _BAD_TOKEN,
                    )
                client = rec["client"] = claims.client
                # the service, the grant, purpose and subject
                svc = snap.services.get(service_id)
                if svc is None or not svc.active:
                    raise Refusal("unknown-service", f"there is no bus service {service_id}")
                purposes = snap.grants.get((client, service_id))
                if purposes is None:
                    raise Refusal("access-denied", f"{client} has no grant for {service_id}")
                if purpose is None:
                    if svc.personal_data:
                        raise Refusal(
                            "purpose-required",
                            "this service handles personal data: send GSB-Purpose",
                        )
                elif purpose not in purposes:
                    raise Refusal(
                        "purpose-not-allowed",
                        f"purpose {purpose!r} is not in the grant ({', '.join(sorted(purposes))})",
                    )
                if subject is None:
                    if svc.personal_data:
                        raise Refusal(
                            "subject-required",
                            "this service handles personal data: send GSB-Subject",
                        )
                elif rec["subject_ref"] is None:
                    raise Refusal("subject-invalid", "GSB-Subject is not a valid national code")
                if svc.maintenance:
                    raise Refusal("service-disabled", f"{service_id} is in maintenance")
                now = monotonic()
                if snap.quotas:
                    await self._quotas(client, service_id, now)
                if call.content_length is not None and call.content_length > svc.max_body:
                    raise too_large(svc.max_body)
                got = req.body_now()
                if got is None:
                    body = await read_body(req.receive, svc.max_body, svc.timeout_s)
                    now_ns = time.time_ns()  # the assertion's iat: the body may have taken a while
                elif len(got) > svc.max_body:
                    raise too_large(svc.max_body)
                else:
                    body = got
                rec["request_bytes"] = len(body)
                digest = request_digest(method, path, query, body)
                rec["request_hash"] = digest.hex()
                extra = b"gsb-request-hash: %s\r\n" % base64.urlsafe_b64encode(digest).rstrip(b"=")
                wait = rt.breaker.allow(svc.provider, now)
                if wait:
                    raise Refusal(
                        "circuit-open",
                        f"provider {svc.provider} is failing; calls are paused",
                        headers=[(b"retry-after", retry_after(wait).encode())],
                    )
                # forward
                per = self._per_grant(client, service_id, purpose, subject is not None)
                rid = call.request_id.encode()
                iat = now_ns // 1_000_000_000
                assertion = rt.assertion_signer.sign_json(
                    b'%s"rid":"%s","iat":%d,"exp":%d}'
                    % (per.claims, rid, iat, iat + rt.settings.assertion_ttl)
                )
                peer = req.client
                head = b"%s%sgsb-request-id: %s\r\ntraceparent: %s\r\nforwarded: %s\r\n%s%s%s%s" % (
                    lines(call.forward) if call.forward else b"",
                    per.head,
                    rid,
                    call.traceparent.encode(),
                    rt.client_addresses.forwarded(peer[0] if peer else None, req.scheme, call.via),
                    b"" if call.tracestate is None else b"tracestate: %s\r\n" % call.tracestate,
                    per.purpose,
                    b"" if subject is None else b"gsb-subject: %s\r\n" % subject.encode(),
                    b"" if call.user is None else b"gsb-user: %s\r\n" % call.user.encode("latin-1"),
                )
                head += b"gsb-assertion: %s\r\n" % assertion
                target = (svc.base_path + path) or "/"
                if query:
                    target += "?" + query.decode("latin-1")
                pool = rt.pools.get(svc.provider, svc.host, svc.port, svc.scheme == "https")
                try:
                    resp = await pool.request(
                        method, target.encode("latin-1"), head, body, svc.max_body, svc.timeout_s
                    )
                except UpstreamError as exc:
                    if exc.code in _CIRCUIT_FAILURES:
                        rt.breaker.failure(svc.provider, monotonic())
                    else:
                        rt.breaker.success(svc.provider)
                    raise Refusal(exc.code, exc.detail) from None
                rt.breaker.success(svc.provider)
                status = rec["status"] = resp.status
                rec["outcome"] = "ok" if status < 400 else "provider-error"
                out = resp.body
                rec["response_hash"] = hashlib.sha256(out).hexdigest()
                rec["response_bytes"] = len(out)
                body_rec = encrypt(rt, call.request_id, body, out) if svc.store_bodies else None
                length = None
                if method == "HEAD":  # the length a GET would have (RFC 9110 §8.6), not 0
                    length = next((v for n, v in resp.headers if n == b"content-length"), None)
                    if length is not None and not length.isdigit():
                        length = None
                head = b"".join(
                    [b"%s: %s\r\n" % h for h in resp.headers if h[0] not in _STRIP_FROM_PROVIDER]
                )
                return await self._logged(
                    rec, started, status, head + extra, out, call.request_id, body_rec, length
                )
            except Refusal as r:
                return await self._refusal(
                    rec,
                    started,
                    r.code,
                    r.detail,
                    r.detail_fa,
                    lines(r.headers) + extra,
                    call.request_id,
                )
            except LogUnavailable as exc:
                return problem_answer(
                    "log-unavailable",
                    f"the message log cannot be written ({exc})",
                    call.request_id or rec["request_id"],
                )
        except Exception:
            log.exception("unexpected error on %s", req.target[:200].decode("latin-1"))
            return problem_answer("internal", "an unexpected error occurred", None)

    async def _quotas(self, client: str, service_id: str, now: float) -> None:
        rt = self.rt
        quotas = rt.snapshot.quotas
        quota = quotas.get((client, None))
        if quota is not None:
            wait = await rt.limiter.take(client, quota, now)
            if wait:
                raise Refusal(
                    "rate-limited",
                    "the client is over its quota",
                    headers=[(b"retry-after", retry_after(wait).encode())],
                )
        quota = quotas.get((client, service_id))
        if quota is not None:
            wait = await rt.limiter.take(f"{client}|{service_id}", quota, now)
            if wait:
                raise Refusal(
                    "rate-limited",
                    "the client is over its quota for this service",
                    headers=[(b"retry-after", retry_after(wait).encode())],
                )

    async def _refusal(
        self,
        rec: dict[str, Any],
        started: float,
        code: str,
        detail: str,
        detail_fa: str | None,
        head: bytes,
        request_id: str,
    ) -> Answer:
        """A refusal, recorded: its answer once the record is committed."""
        rec["request_id"] = rec["request_id"] or request_id
        body = refusal_body(code, detail, rec["request_id"], detail_fa)
        status = PROBLEMS[code].status
        rec["status"], rec["outcome"] = status, code
        rec["response_hash"] = hashlib.sha256(body).hexdigest()
        rec["response_bytes"] = len(body)
        head = refusal_head(code) + head
        return await self._logged(rec, started, status, head, body, rec["request_id"], None)

    async def _logged(
        self,
        rec: dict[str, Any],
        started: float,
        status: int,
        head: bytes,
        body: bytes,
        request_id: str,
        body_rec: Body | None,
        length: bytes | None = None,
    ) -> Answer:
        """The answer to a call once its record is committed: traced, counted, and its head
        completed with the request id, the log id and the length."""
        rt = self.rt
        rec["duration_us"] = int((time.perf_counter() - started) * 1_000_000)
        seq = await rt.writer.append(rec, body_rec)
        end = time.perf_counter()
        if rt.tracer is not None and "_traceparent" in rec:
            end_ns = time.time_ns()
            rt.tracer.record(
                rec,
                rec["_traceparent"],
                rec["_incoming_trace"],
                end_ns - int((end - started) * 1e9),
                end_ns,
            )
        # Only registered services get a series of their own: ids a client makes up do not.
        service = rec["service"]
        rt.metrics.observe(
            rec["client"],
            service if service in rt.snapshot.services else None,
            rec["outcome"],
            end - started,
            rec["request_bytes"],
            len(body),
        )
        head += b"gsb-request-id: %s\r\ngsb-log-id: %s\r\ncontent-length: %s\r\n" % (
            request_id.encode(),
            rt.writer.log_id(seq).encode(),
            length or b"%d" % len(body),
        )
        return status, head, body

    # -- for handlers that answer through ASGI (the events path) --------------

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
        answer = await self._refusal(
            rec, started, code, detail, detail_fa, lines(headers), request_id
        )
        await send_answer(send, answer)

    async def _finish(
        self,
        send: Send,
        rec: dict[str, Any],
        started: float,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        request_id: str,
        body_rec: Body | None,
        length: bytes | None = None,
    ) -> None:
        answer = await self._logged(
            rec, started, status, lines(headers), body, request_id, body_rec, length
        )
        await send_answer(send, answer)
