"""One error envelope for the management API: ``application/problem+json`` of ``problem_body``.

Every failure becomes a problem document with a stable ``code``:

- a :class:`~dargah.core.errors.DargahError` keeps its own code and status;
- a request that fails validation (FastAPI's ``RequestValidationError``) is a
  ``400 bad-request`` whose detail names each offending field;
- unknown paths are ``404 not-found``, unknown methods ``405 method-not-allowed``;
- a database integrity violation is ``409 conflict``;
- a body over :data:`MAX_BODY` is ``413 payload-too-large``;
- anything else is logged with its traceback and answered ``500 internal``,
  without the traceback.

:class:`GuardMiddleware` is the outermost layer: it gives every request an id
(the caller's ``GSB-Request-Id`` when it is a UUID), returns it in the
``GSB-Request-Id`` header and in every problem, enforces the body limit, and
turns any escaped exception into the ``internal`` problem.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import IntegrityError
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match

from dargah.core.errors import (
    PROBLEM_CONTENT_TYPE,
    BadRequest,
    Conflict,
    DargahError,
    ServiceError,
    problem_bytes,
)

log = logging.getLogger("dargah.console.api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY = 5 * 1024 * 1024
"""Largest request body the management API reads (provider OpenAPI documents included)."""

_BY_STATUS = {
    400: "bad-request",
    401: "unauthenticated",
    403: "access-denied",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "payload-too-large",
    429: "rate-limited",
}
_MAX_FIELD_ERRORS = 5


def request_id_of(scope: Scope) -> str | None:
    rid = scope.get("state", {}).get("request_id")
    return rid if isinstance(rid, str) else None


def problem_response(
    err: DargahError, request_id: str | None, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        problem_bytes(err.problem(request_id)),
        status_code=err.status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


async def send_problem(
    scope: Scope, send: Send, err: DargahError, headers: Mapping[str, str] | None = None
) -> None:
    """Answer with a problem straight from ASGI code (middleware)."""
    body = problem_bytes(err.problem(request_id_of(scope)))
    raw = [
        (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": err.status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _field(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "request"


def validation_detail(exc: RequestValidationError) -> str:
    """'body.legal_id: Value error, ...; query.limit: ...': every offending field by name."""
    parts = []
    for error in exc.errors()[:_MAX_FIELD_ERRORS]:
        loc = tuple(error.get("loc", ()))
        msg = str(error.get("msg", "invalid"))
        if error.get("type") == "json_invalid":
            msg = f"the body is not valid JSON ({error.get('ctx', {}).get('error', 'syntax')})"
            loc = loc[:1]
        parts.append(f"{_field(loc)}: {msg}")
    more = len(exc.errors()) - _MAX_FIELD_ERRORS
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts) or "the request is not valid"


async def _on_dargah_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DargahError)
    return problem_response(exc, request_id_of(request.scope))


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    detail = validation_detail(exc)
    return problem_response(
        BadRequest(detail, f"ورودی نادرست است: {detail}"), request_id_of(request.scope)
    )


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _BY_STATUS.get(exc.status_code, "bad-request" if exc.status_code < 500 else "internal")
    detail = {
        "not-found": f"no such resource: {request.method} {request.url.path}",
        "method-not-allowed": f"{request.method} is not allowed on {request.url.path}",
    }.get(code, str(exc.detail))
    headers = dict(exc.headers or {})
    if code == "method-not-allowed":
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return problem_response(ServiceError(code, detail), request_id_of(request.scope), headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route offers on this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


async def _on_integrity_error(request: Request, exc: Exception) -> Response:
    log.warning(
        "management API: integrity error on %s %s: %s",
        request.method,
        request.url.path,
        exc.__class__.__name__,
    )
    return problem_response(
        Conflict(
            "the change conflicts with data already registered",
            "این تغییر با داده‌های ثبت‌شده سازگار نیست",
        ),
        request_id_of(request.scope),
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DargahError, _on_dargah_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_exception)
    app.add_exception_handler(IntegrityError, _on_integrity_error)


def _incoming_request_id(scope: Scope) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == b"gsb-request-id":
            try:
                return str(uuid.UUID(bytes(value).decode("latin-1")))
            except ValueError:
                break
    return str(uuid.uuid4())


class GuardMiddleware:
    """Outermost layer: request id, body limit, and no unhandled exception reaches the server."""

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _incoming_request_id(scope)
        scope.setdefault("state", {})["request_id"] = rid
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message).append("GSB-Request-Id", rid)
            await send(message)

        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            await send_problem(scope, send_with_id, self._too_large())
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    # FastAPI passes HTTPExceptions raised while reading the body through.
                    raise HTTPException(413, self._too_large().detail)
            return message

        try:
            await self.app(scope, limited_receive, send_with_id)
        except Exception:
            log.exception(
                "management API: unexpected error on %s %s (request %s)",
                scope.get("method"),
                scope.get("path"),
                rid,
            )
            if started:
                raise
            await send_problem(
                scope,
                send_with_id,
                ServiceError(
                    "internal",
                    "an unexpected error occurred; it has been logged",
                ),
            )

    def _too_large(self) -> DargahError:
        return ServiceError(
            "payload-too-large",
            f"the body is over the management API's limit of {self.max_body} bytes",
        )


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key.lower() == b"content-length":
            try:
                return int(bytes(value))
            except ValueError:
                return None
    return None
