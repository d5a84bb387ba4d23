"""The bus's other endpoints: tokens, JWKS, metadata, health and metrics (protocol §2, §5)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from typing import Any
from urllib.parse import parse_qsl

from dargah.bus.proxy import (
    CLIENT_CERT,
    Receive,
    Refusal,
    Scope,
    Send,
    read_body,
    send_problem,
)
from dargah.bus.runtime import BusRuntime
from dargah.bus.tokens import OAuthError
from dargah.registry.services import get_openapi

log = logging.getLogger("dargah.bus")

MAX_TOKEN_REQUEST = 64 * 1024


async def send_json(
    send: Send,
    status: int,
    payload: Any,
    *,
    content_type: bytes = b"application/json",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(payload, ensure_ascii=False).encode()
    await send_bytes(send, status, body, content_type, headers)


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    hdrs = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        *(headers or []),
    ]
    if not any(name == b"cache-control" for name, _ in hdrs):  # no-store unless the caller says
        hdrs.append((b"cache-control", b"no-store"))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


def _basic(scope: Scope) -> tuple[str, str] | None:
    for name, value in scope["headers"]:
        if name == b"authorization" and value[:6].lower() == b"basic ":
            try:
                raw = base64.b64decode(value[6:].strip(), validate=True)
                user, _, pw = raw.decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise OAuthError("invalid_client", "malformed Basic credentials", 401) from None
            from urllib.parse import unquote

            return unquote(user), unquote(pw)
    return None


async def token_endpoint(rt: BusRuntime, scope: Scope, receive: Receive, send: Send) -> None:
    """POST /oauth/token (RFC 6749 client credentials, RFC 7523 assertions, RFC 8705 mutual
    TLS)."""
    client: str | None = None
    try:
        if scope["method"] != "POST":
            raise OAuthError("invalid_request", "use POST", 405)
        try:
            raw = await read_body(receive, MAX_TOKEN_REQUEST)
        except Refusal:
            raise OAuthError("invalid_request", "the token request is too large") from None
        try:
            pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise OAuthError("invalid_request", "the body must be form-encoded UTF-8") from None
        form: dict[str, str] = {}
        for k, v in pairs:
            if k in form:
                raise OAuthError("invalid_request", f"parameter {k} given twice")
            form[k] = v
        basic = _basic(scope)
        client = form.get("client_id") or (basic[0] if basic else None)
        answer = await asyncio.to_thread(
            rt.issuer.issue, form, basic, rt.snapshot, scope.get(CLIENT_CERT)
        )
        rt.metrics.tokens_issued += 1
        await asyncio.to_thread(rt.audit_token, client or _assertion_client(form), True, "issued")
        await send_json(send, 200, answer, headers=[(b"pragma", b"no-cache")])
    except OAuthError as exc:
        rt.metrics.tokens_refused += 1
        try:
            await asyncio.to_thread(
                rt.audit_token, client, False, f"{exc.error}: {exc.description}"
            )
        except Exception:  # the audit trail is best effort for refusals; issuing fails closed
            log.debug("could not audit a refused token request", exc_info=True)
        headers = [(b"www-authenticate", b'Basic realm="gsb"')] if exc.status == 401 else []
        await send_json(
            send,
            exc.status,
            {"error": exc.error, "error_description": exc.description},
            headers=headers,
        )


def _assertion_client(form: dict[str, str]) -> str | None:
    token = form.get("client_assertion")
    if not token:
        return None
    try:
        payload = token.split(".")[1]
        iss = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))).get("iss")
        return iss if isinstance(iss, str) else None
    except (IndexError, ValueError):
        return None


async def meta_endpoint(rt: BusRuntime, scope: Scope, send: Send) -> None:
    """GET /r1/meta/services and /r1/meta/services/{id}/openapi, for an authenticated caller."""
    snap = rt.snapshot
    claims = None
    for name, value in scope["headers"]:
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            claims = rt.verifier.verify(value[7:].strip().decode("latin-1"), snap, time.time())
    if claims is not None and claims.cnf is not None and claims.cnf != scope.get(CLIENT_CERT):
        claims = None  # bound to a certificate this connection did not present
    if claims is None:
        await send_problem(
            send,
            "unauthenticated",
            "an Authorization: Bearer token is required",
            None,
            [(b"www-authenticate", b'Bearer realm="gsb"')],
        )
        return
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else scope["path"]
    if path == "/r1/meta/services":
        out = []
        for sid in snap.service_ids_for(claims.client):
            svc = snap.services.get(sid)
            if svc is None or not svc.active:
                continue
            out.append(
                {
                    "id": sid,
                    "title": svc.title,
                    "personal_data": svc.personal_data,
                    "purposes": sorted(snap.grants[(claims.client, sid)]),
                    "openapi": f"{rt.public_url}/r1/meta/services/{sid}/openapi",
                }
            )
        await send_json(send, 200, {"services": out})
        return
    if path.startswith("/r1/meta/services/") and path.endswith("/openapi"):
        sid = path[len("/r1/meta/services/") : -len("/openapi")]
        svc = snap.services.get(sid)
        if svc is None or not svc.active or (claims.client, sid) not in snap.grants:
            await send_problem(
                send, "unknown-service", f"no bus service {sid} that you may call", None, []
            )
            return

        def load() -> str | None:
            with rt.engine.connect() as conn:
                return get_openapi(conn, sid)

        doc = await asyncio.to_thread(load)
        if doc is None:
            await send_problem(send, "not-found", f"{sid} has no OpenAPI document", None, [])
            return
        await send_bytes(send, 200, doc.encode(), b"application/json")
        return
    await send_problem(send, "not-found", "no such metadata endpoint", None, [])


async def health_endpoint(rt: BusRuntime, path: str, send: Send) -> None:
    if path == "/healthz":
        await send_json(send, 200, {"status": "alive"})
        return
    checks = await rt.ready()
    ok = all(checks.values())
    await send_json(
        send, 200 if ok else 503, {"status": "ready" if ok else "not-ready", "checks": checks}
    )


async def metrics_endpoint(rt: BusRuntime, send: Send) -> None:
    w = rt.writer
    # Counts of every worker process of this machine; the gauges are this process's.
    text = rt.shared_metrics.combined().render(
        {
            "gsb_log_records_committed": w.committed,
            "gsb_log_batches_committed": w.batches,
            "gsb_log_writable": 1 if w.healthy else 0,
            "gsb_registry_version": rt.snapshot.version,
        }
    )
    await send_bytes(send, 200, text.encode(), b"text/plain; version=0.0.4; charset=utf-8")


async def jwks_endpoint(rt: BusRuntime, send: Send) -> None:
    await send_json(send, 200, rt.jwks, headers=[(b"cache-control", b"max-age=60")])
