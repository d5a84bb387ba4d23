"""What an agency's provider runs to accept only calls that came through the bus.

:class:`GsbAssertionMiddleware` (pure ASGI) refuses calls without a valid
``GSB-Assertion`` with ``401`` problem+json, counts them and reports them to an
``on_refused`` hook, so that direct, bus-bypassing connections are refused and
can be detected. For other frameworks, :func:`verify_request_headers` does the
same check on a header map. The verifier itself lives in
:mod:`dargah.client.assertions` and is re-exported here.

The 401 deliberately carries no ``GSB-Error`` header: that header belongs to
errors of the bus itself, and a consumer would take it for a stale token.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

from dargah.client.assertions import (
    AssertionClaims,
    AssertionVerifier,
    InvalidAssertion,
    delivery_or_call,
    gsb_headers,
    verify_request_headers,
)
from dargah.core.errors import PROBLEM_CONTENT_TYPE, problem_body, problem_bytes

__all__ = [
    "ASGIApp",
    "AssertionClaims",
    "AssertionVerifier",
    "GsbAssertionMiddleware",
    "InvalidAssertion",
    "RefusedHook",
    "verify_request_headers",
]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
RefusedHook = Callable[[str, Mapping[str, str]], None]

DETAIL_FA = "درخواست از راه گذرگاه خدمات دولت نرسیده یا تأییدیه گذرگاه آن معتبر نیست"


class GsbAssertionMiddleware:
    """Pure ASGI middleware: only calls with a valid ``GSB-Assertion`` reach the app.

    The claims go to ``scope["state"]["gsb"]`` (``request.state.gsb`` in
    Starlette). ``refused`` counts refused calls; ``on_refused(reason,
    headers)`` is called for each (exceptions in it are logged, not raised).
    """

    def __init__(
        self,
        app: ASGIApp,
        verifier: AssertionVerifier,
        *,
        exempt_paths: Iterable[str] = ("/healthz",),
        on_refused: RefusedHook | None = None,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.exempt_paths = frozenset(exempt_paths)
        self.on_refused = on_refused
        self.refused = 0
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or _route_path(scope) in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        h = gsb_headers(headers)
        try:
            claims = await self.verifier.averify(**delivery_or_call(h))
        except InvalidAssertion as exc:
            self._count(exc.reason, headers)
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            else:
                await _send_unauthenticated(send, exc.reason, h.get("gsb-request-id"))
            return
        scope.setdefault("state", {})["gsb"] = claims
        await self.app(scope, receive, send)

    def _count(self, reason: str, headers: Mapping[str, str]) -> None:
        with self._lock:
            self.refused += 1
        if self.on_refused is not None:
            try:
                self.on_refused(reason, headers)
            except Exception:
                log.exception("the on_refused hook failed")


def _route_path(scope: Scope) -> str:
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path


async def _send_unauthenticated(send: Send, reason: str, request_id: str | None) -> None:
    body = problem_bytes(
        problem_body("unauthenticated", f"GSB-Assertion refused: {reason}", request_id, DETAIL_FA)
    )
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
