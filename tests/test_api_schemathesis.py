"""Property tests of the management API from its own OpenAPI document (schemathesis).

Schemathesis generates valid and invalid input for every operation. With the
admin token no input may cause a server error; without it every answer must be
401 problem+json. The instance is seeded so that some generated ids exist.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from starlette.testclient import TestClient

from dargah.console.api import build_management_app
from dargah.core.keys import generate_ed25519, public_jwk
from dargah.core.settings import Settings
from dargah.registry.instance import open_instance

PROVIDER = "DEV/GOV/10100387143/sabt"
CONSUMER = "DEV/GOV/14003000014/portal"
SERVICE = f"{PROVIDER}/person-inquiry.v1"
FAST = settings(
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
    derandomize=True,
    database=None,
)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, str]]:
    home = Path(tmp_path_factory.mktemp("schemathesis"))
    instance_settings = Settings(home=home)
    engine, _info, token = open_instance(instance_settings)
    assert token is not None
    app = build_management_app(instance_settings, engine)
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as c:
        for body in (
            {"legal_id": "10100387143", "name": "ثبت احوال"},
            {"legal_id": "14003000014", "name": "پنجره ملی"},
        ):
            assert c.post("/api/v1/members", json=body).status_code == 201
        for client_id in (PROVIDER, CONSUMER):
            assert c.post("/api/v1/subsystems", json={"id": client_id}).status_code == 201
        keys = f"/api/v1/subsystems/{CONSUMER}/keys"
        assert c.post(keys, json=public_jwk(generate_ed25519())).status_code == 201
        assert (
            c.post(
                "/api/v1/services",
                json={
                    "id": SERVICE,
                    "base_url": "http://127.0.0.1:9",
                    "openapi": {"openapi": "3.1.0"},
                },
            ).status_code
            == 201
        )
        assert (
            c.post(
                "/api/v1/grants",
                json={
                    "client_id": CONSUMER,
                    "service_id": SERVICE,
                    "purposes": ["identity-check"],
                },
            ).status_code
            == 201
        )
    yield app, token
    engine.dispose()


def load_schema(app: FastAPI, phases: dict[str, Any]) -> Any:
    config = schemathesis.Config.from_dict({"generation": {"mode": "positive"}, "phases": phases})
    return schemathesis.openapi.from_asgi("/api/openapi.json", app, config=config)


@pytest.fixture(scope="module")
def operator_schema(seeded: tuple[FastAPI, str]) -> Any:
    """Boundary and invalid values of every field (the coverage phase, positive and negative),
    then random valid input (fuzzing). Random invalid input is left out: it costs several
    seconds per operation to generate and the coverage phase already sends invalid values."""
    return load_schema(
        seeded[0],
        {
            "examples": {"enabled": False},
            "coverage": {"generation": {"mode": "all"}},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": False},
        },
    )


@pytest.fixture(scope="module")
def anonymous_schema(seeded: tuple[FastAPI, str]) -> Any:
    return load_schema(seeded[0], {"enabled": False, "fuzzing": {"enabled": True}})


@pytest.fixture(scope="module")
def admin_headers(seeded: tuple[FastAPI, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {seeded[1]}"}


as_operator = schemathesis.pytest.from_fixture("operator_schema")
as_anonymous = schemathesis.pytest.from_fixture("anonymous_schema")


@as_operator.parametrize()
@settings(FAST, max_examples=30)
def test_no_input_from_the_operator_causes_a_server_error(
    case: schemathesis.Case, admin_headers: dict[str, str]
) -> None:
    response = case.call_and_validate(headers=admin_headers, checks=[not_a_server_error])
    if response.status_code >= 400:
        assert response.headers["content-type"] == ["application/problem+json"], response.text


@as_anonymous.parametrize()
@settings(FAST, max_examples=8)
def test_without_a_token_every_operation_answers_401(case: schemathesis.Case) -> None:
    if case.headers:
        case.headers.pop("Authorization", None)
    response = case.call()
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == ["application/problem+json"]
    assert response.json()["code"] == "unauthenticated"
