"""Running the real bus on loopback for tests: a fresh instance, a provider, clients, grants."""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from dargah.core.keys import generate_ed25519, generate_p256, private_pem, public_jwk
from dargah.core.settings import Settings
from dargah.registry import grants, members, services
from dargah.registry.instance import open_instance

DARGAH = str(Path(sys.executable).parent / "dargah")
PROVIDER_LEGAL_ID = "10100387143"
CONSUMER_LEGAL_ID = "14003000014"
OTHER_LEGAL_ID = "14007650912"
SUBJECT = "0499370899"
PURPOSE = "identity-verification"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Client:
    id: str
    secret: str
    key_file: Path
    kid: str


@dataclass
class World:
    """One instance with a provider ``prov``, a consumer ``cons`` and another client ``other``."""

    settings: Settings
    admin_token: str
    provider_url: str
    instance: str = "TEST"
    bus: subprocess.Popen[bytes] | None = None
    port: int = 0
    clients: dict[str, Client] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    ca_file: str = ""  # set when the bus serves TLS: its certificate, to verify it with

    @property
    def url(self) -> str:
        return f"{'https' if self.ca_file else 'http'}://127.0.0.1:{self.port}"

    @functools.cached_property
    def engine(self) -> Any:
        return open_instance(self.settings)[0]

    def sid(self, code: str, provider: str = "prov") -> str:
        return f"{self.instance}/GOV/{PROVIDER_LEGAL_ID}/{provider}/{code}"

    def member(self, legal_id: str) -> str:
        return f"{self.instance}/GOV/{legal_id}"

    # -- registry setup ----------------------------------------------------

    def add_client(self, name: str, legal_id: str, *, p256: bool = False) -> Client:
        client_id = f"{self.member(legal_id)}/{name}"
        key = generate_p256() if p256 else generate_ed25519()
        key_file = self.settings.home / f"{name}.pem"
        key_file.write_bytes(private_pem(key))
        with self.engine.begin() as conn:
            members.add_subsystem(conn, client_id, "test")
            kid = members.add_key(conn, client_id, public_jwk(key), "test")["kid"]
            secret = (
                members.new_client_secret(conn, client_id, "test")
                if self.instance in ("DEV", "TEST")
                else ""
            )
        c = Client(client_id, secret, key_file, kid)
        self.clients[name] = c
        return c

    def add_service(self, code: str, path: str = "/echo", **kw: Any) -> str:
        service_id = self.sid(code)
        with self.engine.begin() as conn:
            services.add_service(
                conn, service_id, self.provider_url + path, "test", settings=self.settings, **kw
            )
        return service_id

    def grant(self, client: str, service_id: str, purposes: list[str] | None = None) -> None:
        with self.engine.begin() as conn:
            grants.request_grant(
                conn,
                self.clients[client].id,
                service_id,
                purposes or [PURPOSE],
                "test",
                approve=True,
            )

    # -- the bus process ---------------------------------------------------

    def start(self, **env: str) -> None:
        self.port = self.port or free_port()
        full = {**os.environ, "DARGAH_LOG_LEVEL": "warning", **self.env, **env}
        if self.settings.database_url and "DARGAH_DATABASE_URL" not in env:
            full["DARGAH_DATABASE_URL"] = self.settings.database_url
        log = open(self.settings.home / "bus.log", "ab")
        self.bus = subprocess.Popen(
            [
                DARGAH,
                "serve",
                "bus",
                "registry",
                "--home",
                str(self.settings.home),
                "--port",
                str(self.port),
            ],
            env=full,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.bus.poll() is not None:
                raise RuntimeError(
                    f"bus exited: {(self.settings.home / 'bus.log').read_text()[-3000:]}"
                )
            try:
                verify: Any = (
                    ssl.create_default_context(cafile=self.ca_file) if self.ca_file else True
                )
                if httpx.get(f"{self.url}/readyz", timeout=1, verify=verify).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("bus did not become ready in 30 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.bus is not None and self.bus.poll() is None:
            os.killpg(self.bus.pid, sig)
            try:
                self.bus.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.bus.pid, signal.SIGKILL)
                self.bus.wait()
        self.bus = None

    # -- calling -----------------------------------------------------------

    def token(self, client: str = "cons") -> str:
        c = self.clients[client]
        r = httpx.post(
            f"{self.url}/oauth/token",
            data={"grant_type": "client_credentials", "client_id": c.id, "client_secret": c.secret},
        )
        r.raise_for_status()
        return str(r.json()["access_token"])

    def call(
        self,
        service_id: str,
        path: str = "",
        *,
        token: str | None = None,
        method: str = "GET",
        purpose: str | None = PURPOSE,
        subject: str | None = SUBJECT,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> httpx.Response:
        h: dict[str, str] = {}
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        if purpose is not None:
            h["GSB-Purpose"] = purpose
        if subject is not None:
            h["GSB-Subject"] = subject
        h.update(headers or {})
        return httpx.request(
            method, f"{self.url}/r1/{service_id}{path}", headers=h, timeout=30, **kw
        )

    def log_rows(self) -> list[dict[str, Any]]:
        from sqlalchemy import select

        from dargah.store.tables import message_log

        with self.engine.connect() as conn:
            return [
                dict(r)
                for r in conn.execute(select(message_log).order_by(message_log.c.seq)).mappings()
            ]


def make_world(
    home: Path,
    provider_url: str,
    database_url: str = "",
    instance: str = "TEST",
    outbound_allow: str | None = None,
) -> World:
    """A new instance. A production one (``IR``) refuses loopback providers unless allowed:
    ``outbound_allow`` (``DARGAH_OUTBOUND_ALLOW``) is 127.0.0.0/8 there unless given, so
    that the loopback test provider can serve it, as an operator allows a sidecar."""
    home.mkdir(parents=True, exist_ok=True)
    if outbound_allow is None:
        outbound_allow = "" if instance in ("DEV", "TEST") else "127.0.0.0/8"
    settings = Settings(
        home=home, database_url=database_url, instance=instance, outbound_allow=outbound_allow
    )
    _engine, _info, token = open_instance(settings)
    assert token is not None
    w = World(settings, token, provider_url, instance=instance)
    if outbound_allow:
        w.env["DARGAH_OUTBOUND_ALLOW"] = outbound_allow
    with w.engine.begin() as conn:
        for legal_id, name in (
            (PROVIDER_LEGAL_ID, "ثبت احوال"),
            (CONSUMER_LEGAL_ID, "آزمون"),
            (OTHER_LEGAL_ID, "دیگری"),
        ):
            members.add_member(conn, w.member(legal_id), name, "test")
        members.add_subsystem(conn, f"{w.member(PROVIDER_LEGAL_ID)}/prov", "test")
    w.add_client("cons", CONSUMER_LEGAL_ID)
    w.add_client("other", OTHER_LEGAL_ID)
    return w


def dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=1)
