"""Admin API tokens are named and several: one per operator or automation, each revocable,
listed with its last use; the instance's single token of before becomes the one named
``operator``."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, select, text
from starlette.testclient import TestClient

from dargah.console.api import build_management_app
from dargah.core.settings import Settings
from dargah.registry.instance import hash_secret, open_instance
from dargah.store.db import alembic_config, make_engine
from dargah.store.tables import admin_tokens
from tests.harness import DARGAH


@dataclass
class Api:
    app: Any
    engine: Engine
    token: str  # the instance's first token, named "operator"

    def client(self, token: str | None = None) -> TestClient:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return TestClient(self.app, headers=headers)


@pytest.fixture
def api(tmp_path: Path, database_url: str) -> Iterator[Api]:
    settings = Settings(home=tmp_path / "home", database_url=database_url)
    engine, _info, token = open_instance(settings)
    assert token is not None
    yield Api(build_management_app(settings, engine), engine, token)
    engine.dispose()


def _refused_within(client: TestClient, seconds: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if client.get("/api/v1/members").status_code == 401:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"the revoked token still worked after {seconds} s")


def test_each_operator_has_a_named_token_that_works_until_it_is_revoked(api: Api) -> None:
    with api.client() as operator:
        r = operator.post("/api/v1/admin-tokens", json={"name": "ali.rezaei"})
        assert r.status_code == 201, r.text
        made = r.json()
        assert (made["name"], made["status"], made["created_by"]) == (
            "ali.rezaei",
            "active",
            "api:operator",
        )
        with api.client(made["token"]) as ali:
            assert ali.get("/api/v1/members").status_code == 200
            r = ali.post("/api/v1/members", json={"legal_id": "10100387143", "name": "ثبت احوال"})
            assert r.status_code == 201, r.text
            actors = {e["actor"] for e in operator.get("/api/v1/audit").json()}
            assert "api:ali.rezaei" in actors, "the audit trail names the token's holder"

            r = operator.post("/api/v1/admin-tokens/ali.rezaei/revoke")
            assert r.status_code == 200 and r.json()["status"] == "revoked", r.text
            _refused_within(ali, 5)
        listed = {t["name"]: t for t in operator.get("/api/v1/admin-tokens").json()}
        assert listed["ali.rezaei"]["status"] == "revoked" and listed["ali.rezaei"]["revoked_at"]
        assert listed["ali.rezaei"]["last_used_at"], "its last use is listed"
        assert listed["operator"]["status"] == "active"
        assert "token" not in listed["operator"] and "token_hash" not in listed["operator"]
        assert operator.get("/api/v1/members").status_code == 200, "other tokens keep working"


def test_token_names_are_checked_and_an_active_name_is_not_taken_twice(api: Api) -> None:
    with api.client() as operator:
        for bad in ("", "Ali", "a b", "-x", "x" * 64, "علی"):
            r = operator.post("/api/v1/admin-tokens", json={"name": bad})
            assert r.status_code == 400, (bad, r.text)
        assert operator.post("/api/v1/admin-tokens", json={"name": "ci"}).status_code == 201
        r = operator.post("/api/v1/admin-tokens", json={"name": "ci"})
        assert r.status_code == 409 and r.json()["code"] == "conflict"
        first = operator.post("/api/v1/admin-tokens/ci/revoke")
        assert first.status_code == 200
        again = operator.post("/api/v1/admin-tokens/ci/revoke")
        assert again.json()["revoked_at"] == first.json()["revoked_at"], (
            "revoking twice is no error"
        )
        reused = operator.post("/api/v1/admin-tokens", json={"name": "ci"})
        assert reused.status_code == 201, "a revoked token's name may be used again"
        assert operator.post("/api/v1/admin-tokens/nobody/revoke").status_code == 404
    with api.engine.connect() as conn:
        hashes = {h for (h,) in conn.execute(select(admin_tokens.c.token_hash))}
    assert hash_secret(reused.json()["token"]) in hashes
    assert reused.json()["token"] not in json.dumps(sorted(hashes)), "only hashes are kept"


def test_a_tokens_last_use_is_written_at_most_once_a_minute_not_on_every_request(
    api: Api,
) -> None:
    with api.client() as operator:
        for _ in range(3):
            assert operator.get("/api/v1/members").status_code == 200
        first = _last_used(api.engine, "operator")
        assert first is not None
        time.sleep(1.1)
        for _ in range(3):
            assert operator.get("/api/v1/members").status_code == 200
    assert _last_used(api.engine, "operator") == first


def _last_used(engine: Engine, name: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(  # type: ignore[no-any-return]
            select(admin_tokens.c.last_used_at).where(admin_tokens.c.name == name)
        ).scalar_one()


def _dargah(home: Path, *args: str) -> str:
    r = subprocess.run(
        [DARGAH, *args, "--home", str(home)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_the_cli_creates_lists_and_revokes_tokens_by_name(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = Settings(home=home)
    engine, _info, first = open_instance(settings)
    assert first is not None
    token = _dargah(home, "admin", "token", "create", "ci-deploy").strip()
    assert len(token) >= 40 and token != first
    app = build_management_app(settings, engine)
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as ci:
        assert ci.get("/api/v1/members").status_code == 200
        listed = {t["name"]: t for t in json.loads(_dargah(home, "admin", "token", "list"))}
        assert set(listed) == {"operator", "ci-deploy"}
        assert listed["ci-deploy"]["created_by"].startswith("cli")
        assert listed["ci-deploy"]["last_used_at"] is not None
        revoked = json.loads(_dargah(home, "admin", "token", "revoke", "ci-deploy"))
        assert revoked["status"] == "revoked"
        _refused_within(ci, 5)
    with TestClient(app, headers={"Authorization": f"Bearer {first}"}) as operator:
        assert operator.get("/api/v1/members").status_code == 200
    r = subprocess.run(
        [DARGAH, "admin", "token", "create", "Not A Name", "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "bad-request" in r.stderr
    engine.dispose()


def test_the_single_token_of_an_older_instance_becomes_the_token_named_operator(
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path / "home")
    engine = make_engine(settings)
    command.upgrade(alembic_config(engine), "0012")
    old = "an-old-instance-token-of-forty-three-chars-xx"
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO instance_meta (key, value) VALUES (:k, :v)"),
            [
                {"k": "instance", "v": "DEV"},
                {"k": "created_at", "v": "2026-01-01T00:00:00.000000Z"},
                {"k": "admin_token", "v": hash_secret(old)},
            ],
        )
        conn.execute(text("INSERT INTO registry_version (id, version) VALUES (1, 1)"))
    engine.dispose()
    engine, _info, fresh = open_instance(settings)  # migrates to the newest schema
    assert fresh is None
    with engine.connect() as conn:
        rows = conn.execute(select(admin_tokens)).mappings().all()
        left = conn.execute(text("SELECT count(*) FROM instance_meta WHERE key = 'admin_token'"))
        assert left.scalar_one() == 0
    assert [(r["name"], r["created_at"]) for r in rows] == [
        ("operator", "2026-01-01T00:00:00.000000Z")
    ]
    with TestClient(
        build_management_app(settings, engine), headers={"Authorization": f"Bearer {old}"}
    ) as c:
        assert c.get("/api/v1/members").status_code == 200
    engine.dispose()
