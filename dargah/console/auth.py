"""Who may call the management API: authentication in front of every route, roles on each.

Two steps, both failing closed:

1. :class:`AuthMiddleware` authenticates every request under ``/api/`` except the
   paths in :data:`PUBLIC_PATHS`, *before* routing and body parsing, so a caller
   without a valid token learns nothing (not even whether a body was well-formed)
   and gets ``401 unauthenticated``. The :class:`Principal` goes into the
   request's state.
2. Every route declares the roles it admits with a :class:`RequireRole`
   dependency (``Depends(OPERATOR)``); it answers ``403 access-denied`` for other
   roles, and ``401`` should a request ever reach it unauthenticated.
   ``tests/test_route_auth.py`` fails when a route declares neither roles nor
   membership of :data:`PUBLIC_PATHS`.

Today the credentials are the instance's admin API tokens (role ``operator``), one
per operator or automation, each named: the actor written to the audit trail is
``api:{name}`` (``api:operator`` for the instance's first token). They are checked
against a copy kept in memory that follows the registry's change feed
(:class:`dargah.registry.admin_tokens.AdminTokens`), so a revoked token is refused by
every process within seconds and a request costs no database round trip. Agency
administrators and auditors will add roles and credentials here (sessions, per-user
tokens) without touching the routes.

(No ``from __future__ import annotations`` here: FastAPI reads the annotations of
:meth:`RequireRole.__call__` at runtime, and an instance has no module globals to
resolve strings against.)
"""

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute

from dargah.console.api_errors import ASGIApp, Receive, Scope, Send, send_problem
from dargah.core.errors import AccessDenied, Unauthenticated
from dargah.registry.admin_tokens import AdminTokens

log = logging.getLogger("dargah.console.auth")

PROTECTED_PREFIX = "/api/"
PUBLIC_PATHS: dict[str, str] = {
    "/api/openapi.json": "the API's description; it holds no data of the instance",
}
"""Paths under :data:`PROTECTED_PREFIX` that anyone may call, each with the reason."""

_MAX_TOKEN = 512


class Role(StrEnum):
    OPERATOR = "operator"  # the national operator (ITO): everything
    AGENCY_ADMIN = "agency-admin"  # reserved: one member's subsystems, services, grants
    AUDITOR = "auditor"  # reserved: read-only, audit trail included


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller of the management API."""

    role: Role
    actor: str  # written to the audit trail
    member_id: str | None = None  # the member an agency administrator acts for


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > _MAX_TOKEN:
        return None
    return token


def authenticate(tokens: AdminTokens, authorization: str | None) -> Principal | None:
    """The principal for an ``Authorization`` header value, or None. Blocking (database,
    now and then)."""
    token = bearer_token(authorization)
    if token is None:
        return None
    name = tokens.check(token)
    if name is None:
        return None
    return Principal(Role.OPERATOR, f"api:{name}")


class AuthMiddleware:
    """Authenticates every request under ``/api/`` but the public paths, before routing."""

    def __init__(self, app: ASGIApp, engine: Engine) -> None:
        self.app = app
        self.engine = engine
        self.tokens = AdminTokens(engine)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(PROTECTED_PREFIX) or path in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        header = _header(scope, b"authorization")
        principal = await run_in_threadpool(authenticate, self.tokens, header)
        if principal is None:
            reason = "no bearer token" if bearer_token(header) is None else "unknown token"
            log.info("management API: refused %s %s (%s)", scope.get("method"), path, reason)
            await send_problem(
                scope,
                send,
                Unauthenticated(
                    "send 'Authorization: Bearer <admin API token>'",
                    "برای این درخواست توکن معتبر مدیریت لازم است",
                ),
                {"WWW-Authenticate": 'Bearer realm="dargah"'},
            )
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


_bearer = HTTPBearer(auto_error=False, description="One of the instance's admin API tokens.")


class RequireRole:
    """A route's declared authentication: the roles it admits. Use as ``Depends(OPERATOR)``."""

    def __init__(self, *roles: Role) -> None:
        if not roles:
            raise ValueError("a route must admit at least one role")
        self.roles = frozenset(roles)

    def __call__(
        self,
        request: Request,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        principal = request.scope.get("state", {}).get("principal")
        if not isinstance(principal, Principal):
            raise Unauthenticated(
                "this route needs an authenticated caller",
                "برای این درخواست توکن معتبر مدیریت لازم است",
            )
        if principal.role not in self.roles:
            raise AccessDenied(
                f"role {principal.role} may not call this route", "نقش شما اجازه این کار را ندارد"
            )
        return principal

    def __repr__(self) -> str:
        return f"RequireRole({', '.join(sorted(self.roles))})"


OPERATOR = RequireRole(Role.OPERATOR)


def declared_roles(route: BaseRoute) -> frozenset[Role] | None:
    """The roles a route admits, or None when it declares none (public or a mistake)."""
    if not isinstance(route, APIRoute):
        return None
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        if isinstance(dep.call, RequireRole):
            return dep.call.roles
        stack.extend(dep.dependencies)
    return None
