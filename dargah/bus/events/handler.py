"""``/e1/``: publishing (``POST /e1/{topic id}``) and pulling (``GET /e1/subscriptions/…``) events.

Both are recorded in the message log like ``/r1/`` calls; refusals too.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import time
import uuid
from typing import Any
from urllib.parse import parse_qs

from dargah.bus.events import store
from dargah.bus.log.writer import LogUnavailable
from dargah.bus.proxy import (
    CLIENT_CERT,
    ProxyHandler,
    Receive,
    Refusal,
    Scope,
    Send,
    new_record,
    read_body,
    send_problem,
)
from dargah.bus.request import ParsedCall, ParseError, parse_headers, request_id_of
from dargah.bus.runtime import BusRuntime
from dargah.core.clock import now_rfc3339
from dargah.core.identifiers import InvalidIdentifier, parse_topic_id

PULL_PREFIX = "/e1/subscriptions/"
PULL_LIMIT = 100
_JSON = [(b"content-type", b"application/json")]


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{seq}".encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, _, seq = text.partition(":")
        if version != "v1" or not seq.isdigit():
            raise ValueError(cursor)
        return int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Refusal("bad-request", "the cursor is not one this bus gave out") from None


def check_cloudevent(body: bytes) -> dict[str, Any]:
    """A CloudEvents 1.0 event in structured JSON mode, or bad-request."""
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Refusal(
            "bad-request", "the event must be CloudEvents JSON (structured mode)"
        ) from None
    if not isinstance(event, dict):
        raise Refusal("bad-request", "the event must be a JSON object")
    if event.get("specversion") != "1.0":
        raise Refusal("bad-request", 'specversion must be "1.0"')
    for attr in ("id", "source", "type"):
        value = event.get(attr)
        if not isinstance(value, str) or not value or len(value) > 255:
            raise Refusal(
                "bad-request", f"the CloudEvents attribute {attr!r} must be a non-empty string"
            )
    return event


class EventsHandler:
    def __init__(self, rt: BusRuntime, proxy: ProxyHandler, wake: asyncio.Event) -> None:
        self.rt = rt
        self.proxy = proxy
        self.wake = wake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rt = self.rt
        started = time.perf_counter()
        raw = scope.get("raw_path")
        path = raw.decode("latin-1") if raw else scope["path"]
        query: bytes = scope.get("query_string", b"")
        method: str = scope["method"]
        call = ParsedCall()
        rec = new_record(now_rfc3339(), method, path, query)
        try:
            if not rt.writer.healthy:
                raise LogUnavailable("the message log is not writable")
            try:
                if "dargah.malformed" in scope:  # the server could not read the headers
                    raise ParseError(scope["dargah.malformed"])
                parse_headers(scope["headers"], call)
            except ParseError as exc:
                call.request_id = (
                    call.request_id or request_id_of(scope["headers"]) or str(uuid.uuid4())
                )
                raise Refusal("bad-request", str(exc)) from None
            finally:
                rec["request_id"] = call.request_id or str(uuid.uuid4())
            rec["user"] = call.user
            if path.startswith(PULL_PREFIX):
                await self._pull(scope, send, rec, started, call, path, query)
            else:
                await self._publish(scope, receive, send, rec, started, call, path, query)
        except Refusal as r:
            await self.proxy._refuse(
                send, rec, started, r.code, r.detail, r.detail_fa, r.headers, rec["request_id"]
            )
        except LogUnavailable as exc:
            await send_problem(
                send,
                "log-unavailable",
                f"the message log cannot be written ({exc})",
                rec["request_id"] or None,
                [],
            )

    def _authenticate(self, call: ParsedCall, scope: Scope) -> str:
        auth = call.authorization
        if auth is None or auth[:7].lower() != b"bearer ":
            raise Refusal(
                "unauthenticated",
                "an Authorization: Bearer token is required",
                headers=[(b"www-authenticate", b'Bearer realm="gsb"')],
            )
        claims = self.rt.verifier.verify(
            auth[7:].strip().decode("latin-1"), self.rt.snapshot, time.time()
        )
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
        return claims.client

    async def _publish(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        rec: dict[str, Any],
        started: float,
        call: ParsedCall,
        path: str,
        query: bytes,
    ) -> None:
        rt = self.rt
        topic_id = path[len("/e1/") :]
        try:
            parse_topic_id(topic_id)
        except InvalidIdentifier as exc:
            raise Refusal("bad-request", str(exc)) from None
        rec["service"], rec["path"] = topic_id, ""
        if scope["method"] != "POST":
            raise Refusal(
                "method-not-allowed",
                "events are published with POST",
                headers=[(b"allow", b"POST")],
            )
        client = rec["client"] = self._authenticate(call, scope)
        topic = rt.snapshot.topics.get(topic_id)
        if topic is None or not topic.active:
            raise Refusal("unknown-service", f"there is no topic {topic_id}")
        if topic.owner != client:
            raise Refusal("access-denied", f"only {topic.owner} may publish on {topic_id}")
        limit = rt.settings.event_max_bytes
        if call.content_length is not None and call.content_length > limit:
            raise Refusal("payload-too-large", f"an event may be at most {limit} bytes")
        body = await read_body(receive, limit)
        rec["request_bytes"] = len(body)
        rec["request_hash"] = hashlib.sha256(b"POST\n\n%s\n%s" % (query, body)).hexdigest()
        event = check_cloudevent(body)
        await asyncio.to_thread(
            store.publish,
            rt.engine,
            topic_id,
            event["id"],
            json.dumps(event, ensure_ascii=False, separators=(",", ":")),
            client,
        )
        self.wake.set()
        answer = json.dumps({"id": event["id"], "topic": topic_id, "accepted": True}).encode()
        rec["status"], rec["outcome"] = 202, "ok"
        rec["response_hash"] = hashlib.sha256(answer).hexdigest()
        rec["response_bytes"] = len(answer)
        await self.proxy._finish(
            send, rec, started, 202, list(_JSON), answer, rec["request_id"], None
        )

    async def _pull(
        self,
        scope: Scope,
        send: Send,
        rec: dict[str, Any],
        started: float,
        call: ParsedCall,
        path: str,
        query: bytes,
    ) -> None:
        rt = self.rt
        sub_id, _, tail = path[len(PULL_PREFIX) :].partition("/")
        if tail != "events":
            raise Refusal("not-found", "pull events at /e1/subscriptions/{id}/events")
        try:
            uuid.UUID(sub_id)
        except ValueError:
            raise Refusal("bad-request", "a subscription id is a UUID") from None
        if scope["method"] not in ("GET", "HEAD"):
            raise Refusal(
                "method-not-allowed", "pull events with GET", headers=[(b"allow", b"GET")]
            )
        client = rec["client"] = self._authenticate(call, scope)
        params = parse_qs(query.decode("latin-1"))
        after = decode_cursor(params["after"][0]) if params.get("after") else None
        sub, rows = await asyncio.to_thread(
            store.events_after, rt.engine, sub_id, after, PULL_LIMIT
        )
        if sub is None or sub["client_id"] != client or sub["status"] != "active":
            raise Refusal("unknown-service", f"you have no subscription {sub_id}")
        rec["service"] = sub["topic_id"]
        if (client, sub["topic_id"]) not in rt.snapshot.grants:
            raise Refusal("access-denied", f"{client} no longer has a grant on {sub['topic_id']}")
        if sub["mode"] != "pull":
            raise Refusal("bad-request", "this subscription is delivered by webhook, not pulled")
        last = rows[-1][0] if rows else after
        next_cursor: str | None = encode_cursor(last) if last is not None else None
        answer = (
            '{"events":['
            + ",".join(body for _, body in rows)
            + '],"next":'
            + json.dumps(next_cursor)
            + "}"
        ).encode()
        rec["status"], rec["outcome"] = 200, "ok"
        rec["response_hash"] = hashlib.sha256(answer).hexdigest()
        rec["response_bytes"] = len(answer)
        await self.proxy._finish(
            send, rec, started, 200, list(_JSON), answer, rec["request_id"], None
        )
