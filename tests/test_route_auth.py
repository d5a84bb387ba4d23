"""Every route of the management API states its authentication, and enforces it.

A route either admits roles through a ``RequireRole`` dependency, or is listed in
``dargah.console.auth.PUBLIC_PATHS`` with its reason. Every other route answers
``401`` problem+json to a caller without a valid token, whatever it sends.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.testclient import TestClient

from dargah.console.api import build_management_app
from dargah.console.auth import (
    OPERATOR,
    PROTECTED_PREFIX,
    PUBLIC_PATHS,
    Principal,
    Role,
    declared_roles,
)
from dargah.core.errors import AccessDenied, Unauthenticated
from dargah.core.settings import Settings
from dargah.registry.instance import open_instance

PROBLEM = "application/problem+json"
SAMPLE_PARAMS = {
    "instance": "DEV",
    "member_class": "GOV",
    "legal_id": "10100387143",
    "subsystem": "sabt",
    "service": "person-inquiry.v1",
    "kid": "0123456789abcdef",
    "thumbprint": "A" * 43,
    "grant_id": "1",
    "incident_id": "1",
    "service_id": "10000000001",
    "period": "1403",
    "name": "ci-deploy",
}
WRONG_AUTHORIZATIONS = [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Bearer not-the-token",
    "Basic YWRtaW46YWRtaW4=",
    "Bearer " + "x" * 5000,
]


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, str]]:
    settings = Settings(home=Path(tmp_path_factory.mktemp("route-auth")))
    engine, _info, token = open_instance(settings)
    assert token is not None
    yield build_management_app(settings, engine), token
    engine.dispose()


def undeclared_routes(app: FastAPI) -> list[str]:
    """Routes that declare no authentication, or that the authentication layer does not cover."""
    bad = []
    for route in app.routes:
        path = getattr(route, "path", repr(route))
        if path in PUBLIC_PATHS:
            continue
        roles = declared_roles(route)
        if not roles:
            bad.append(f"{path}: declares no roles and is not in PUBLIC_PATHS")
        elif not path.startswith(PROTECTED_PREFIX):
            bad.append(f"{path}: outside {PROTECTED_PREFIX}, where tokens are not checked")
    return bad


def concrete_requests(app: FastAPI) -> list[tuple[str, str]]:
    """(method, URL) for every method of every protected route, parameters filled in."""
    out = []
    for route in app.routes:
        if not isinstance(route, APIRoute) or route.path in PUBLIC_PATHS:
            continue
        names = re.findall(r"{(\w+)(?::\w+)?}", route.path)
        missing = [n for n in names if n not in SAMPLE_PARAMS]
        assert not missing, f"add a sample value for {missing} of {route.path} to SAMPLE_PARAMS"
        url = route.path_format.format(**{n: SAMPLE_PARAMS[n] for n in names})
        out += [(method, url) for method in sorted(route.methods)]
    return out


def test_every_route_declares_its_authentication(instance: tuple[FastAPI, str]) -> None:
    app, _ = instance
    assert undeclared_routes(app) == []


def test_every_route_is_admitted_to_the_operator(instance: tuple[FastAPI, str]) -> None:
    app, _ = instance
    for route in app.routes:
        if getattr(route, "path", None) not in PUBLIC_PATHS:
            assert Role.OPERATOR in (declared_roles(route) or ()), route


def test_every_public_path_is_a_real_route_with_a_reason(instance: tuple[FastAPI, str]) -> None:
    app, _ = instance
    paths = {getattr(route, "path", None) for route in app.routes}
    for path, reason in PUBLIC_PATHS.items():
        assert path in paths and reason


def test_the_meta_test_catches_a_route_without_authentication(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    engine, _info, _token = open_instance(settings)
    app = build_management_app(settings, engine)

    def forgotten() -> dict[str, str]:
        return {"secret": "data"}

    app.add_api_route("/api/v1/forgotten", forgotten)

    assert undeclared_routes(app) == [
        "/api/v1/forgotten: declares no roles and is not in PUBLIC_PATHS"
    ]
    # Even so, authentication fails closed: the middleware refuses it without a token.
    with TestClient(app) as client:
        assert client.get("/api/v1/forgotten").status_code == 401
    engine.dispose()


def test_every_protected_route_answers_401_without_a_valid_token(
    instance: tuple[FastAPI, str],
) -> None:
    app, token = instance
    failures = []
    with TestClient(app) as client:
        requests = concrete_requests(app)
        assert len(requests) > 25
        for method, url in requests:
            for authorization in [*WRONG_AUTHORIZATIONS, f"Bearer {token}x", token]:
                headers = {"content-type": "application/json"}
                if authorization is not None:
                    headers["Authorization"] = authorization
                # A malformed body too: authentication comes before anything else.
                response = client.request(method, url, headers=headers, content=b"{not json")
                if (
                    response.status_code != 401
                    or response.headers.get("content-type") != PROBLEM
                    or response.json().get("code") != "unauthenticated"
                    or not response.headers.get("www-authenticate", "").startswith("Bearer")
                ):
                    failures.append(
                        f"{method} {url} with {authorization!r}: "
                        f"{response.status_code} {response.text[:200]}"
                    )
    assert failures == []


def test_with_the_admin_token_every_route_lets_the_caller_in(instance: tuple[FastAPI, str]) -> None:
    app, token = instance
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
        for method, url in concrete_requests(app):
            response = client.request(method, url, json={})
            assert response.status_code not in (401, 403, 500), (method, url, response.text)


def test_the_openapi_document_needs_no_token(instance: tuple[FastAPI, str]) -> None:
    app, _ = instance
    with TestClient(app) as client:
        response = client.get("/api/openapi.json")
    assert response.status_code == 200 and response.json()["openapi"].startswith("3.")


def _request_with(principal: Principal | None) -> Request:
    state: dict[str, Any] = {} if principal is None else {"principal": principal}
    return Request(
        {"type": "http", "method": "GET", "path": "/api/v1/x", "headers": [], "state": state}
    )


def test_a_role_a_route_does_not_admit_is_refused_with_access_denied() -> None:
    auditor = Principal(Role.AUDITOR, "api:auditor")
    with pytest.raises(AccessDenied):
        OPERATOR(_request_with(auditor), None)
    operator = Principal(Role.OPERATOR, "api:operator")
    assert OPERATOR(_request_with(operator), None) is operator


def test_a_route_reached_without_authentication_refuses_the_caller() -> None:
    with pytest.raises(Unauthenticated):
        OPERATOR(_request_with(None), None)
