"""The agency-side client: token acquisition and calls, and the provider's assertion check.

Everything runs on real uvicorn servers on 127.0.0.1: a tiny in-test "bus"
(token endpoint, /r1/ echo or forwarder, JWKS) and a provider app behind
GsbAssertionMiddleware.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dargah.client import (
    AssertionVerifier,
    AsyncGsbClient,
    GsbAssertionMiddleware,
    GsbClient,
    GsbError,
    InvalidAssertion,
    ProviderError,
    TokenError,
    verify_request_headers,
)
from dargah.core.keys import (
    PrivateKey,
    b64url,
    generate_ed25519,
    generate_p256,
    jwk_to_public_key,
    private_pem,
    public_jwk,
)

CLIENT = "TEST/GOV/14003000014/tester"
SERVICE = "TEST/GOV/10100387143/sabt/person-inquiry.v1"
OTHER_SERVICE = "TEST/GOV/10100387143/sabt/other.v1"
SUBJECT = "0013542419"


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn on a free loopback port, in a thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


# --- an in-test bus: JWKS, assertion signing and forwarding ----------------------------


class FakeBus:
    """Publishes its Ed25519 keys and forwards /r1/ calls with a signed GSB-Assertion."""

    def __init__(self) -> None:
        self.keys = [generate_ed25519()]
        self.jwks_hits = 0
        self.provider_url = ""
        self.url = ""

    def kid(self, index: int = 0) -> str:
        return public_jwk(self.keys[index])["kid"]

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.url,
            "sub": CLIENT,
            "aud": SERVICE,
            "rid": str(uuid.uuid4()),
            "purpose": "identity-verification",
            "subject_present": True,
            "iat": now,
            "exp": now + 60,
        }
        claims.update(overrides)
        return claims

    def sign(self, claims: dict[str, Any], key: PrivateKey | None = None, kid: str = "") -> str:
        return jwt.encode(
            claims,
            key or self.keys[-1],
            algorithm="EdDSA",
            headers={"kid": kid or public_jwk(self.keys[-1])["kid"]},
        )

    def headers(self, claims: dict[str, Any], token: str | None = None) -> dict[str, str]:
        return {
            "GSB-Assertion": token or self.sign(claims),
            "GSB-Client": claims["sub"],
            "GSB-Service": claims["aud"],
            "GSB-Request-Id": claims["rid"],
        }

    def app(self) -> Starlette:
        async def jwks(request: Request) -> Response:
            self.jwks_hits += 1
            return JSONResponse({"keys": [public_jwk(k) for k in self.keys]})

        async def forward(request: Request) -> Response:
            parts = request.path_params["rest"].split("/")
            service, path = "/".join(parts[:5]), "/" + "/".join(parts[5:])
            claims = self.claims(aud=service, purpose=request.headers.get("gsb-purpose"))
            headers = self.headers(claims)
            async with httpx.AsyncClient() as http:
                resp = await http.get(self.provider_url + path, headers=headers)
            return Response(resp.content, resp.status_code, media_type="application/json")

        return Starlette(
            routes=[
                Route("/.well-known/jwks.json", jwks),
                Route("/r1/{rest:path}", forward),
            ]
        )


def provider_app(verifier: AssertionVerifier, refused: list[str]) -> GsbAssertionMiddleware:
    async def whoami(request: Request) -> Response:
        c = request.state.gsb
        return JSONResponse(
            {"client": c.client, "service": c.service, "purpose": c.purpose, "rid": c.request_id}
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/whoami", whoami), Route("/healthz", healthz)])
    return GsbAssertionMiddleware(
        app, verifier, on_refused=lambda reason, headers: refused.append(reason)
    )


class ProviderSetup:
    def __init__(self, bus: FakeBus, middleware: GsbAssertionMiddleware, refused: list[str]):
        self.bus = bus
        self.middleware = middleware
        self.refused = refused
        self.verifier = middleware.verifier


@pytest.fixture
def provider() -> Iterator[ProviderSetup]:
    bus = FakeBus()
    refused: list[str] = []
    with serve(bus.app()) as bus_url:
        bus.url = bus_url
        verifier = AssertionVerifier(
            f"{bus_url}/.well-known/jwks.json",
            audiences={SERVICE},
            min_refetch_interval=0.5,
        )
        middleware = provider_app(verifier, refused)
        with serve(middleware) as provider_url:
            bus.provider_url = provider_url
            yield ProviderSetup(bus, middleware, refused)
        verifier.close()


def test_a_call_forwarded_by_the_bus_reaches_the_provider_with_the_bus_claims(
    provider: ProviderSetup,
) -> None:
    resp = httpx.get(
        f"{provider.bus.url}/r1/{SERVICE}/whoami", headers={"GSB-Purpose": "benefit-eligibility"}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["client"] == CLIENT
    assert resp.json()["service"] == SERVICE
    assert resp.json()["purpose"] == "benefit-eligibility"
    assert provider.middleware.refused == 0


def test_a_direct_call_without_an_assertion_is_refused_with_persian_problem_json(
    provider: ProviderSetup,
) -> None:
    resp = httpx.get(f"{provider.bus.provider_url}/whoami", headers={"GSB-Client": CLIENT})
    assert resp.status_code == 401
    assert resp.headers["content-type"] == "application/problem+json"
    assert "GSB-Error" not in resp.headers
    problem = resp.json()
    assert problem["type"] == "urn:gsb:problem:unauthenticated"
    assert problem["code"] == "unauthenticated"
    assert problem["status"] == 401
    assert "گذرگاه" in problem["detail_fa"]
    assert provider.middleware.refused == 1
    assert provider.refused == ["the call carries no GSB-Assertion header"]


def test_the_health_check_needs_no_assertion(provider: ProviderSetup) -> None:
    assert httpx.get(f"{provider.bus.provider_url}/healthz").status_code == 200


def _alg_none(bus: FakeBus, claims: dict[str, Any]) -> str:
    header = b64url(json.dumps({"alg": "none", "kid": bus.kid(), "typ": "JWT"}).encode())
    return f"{header}.{b64url(json.dumps(claims).encode())}."


def _tampered(bus: FakeBus, claims: dict[str, Any]) -> str:
    header, _, signature = bus.sign(claims).split(".")
    forged = b64url(json.dumps({**claims, "sub": "TEST/GOV/14003000014/evil"}).encode())
    return f"{header}.{forged}.{signature}"


def _signed(**overrides: Any) -> Callable[[FakeBus, dict[str, Any]], tuple[dict[str, Any], str]]:
    """Headers from the original claims, assertion signed over changed claims."""
    return lambda b, c: (c, b.sign({**c, **overrides}))


def _expired(b: FakeBus, c: dict[str, Any]) -> tuple[dict[str, Any], str]:
    return c, b.sign({**c, "iat": c["iat"] - 300, "exp": c["iat"] - 60})


def _wrong_audience(b: FakeBus, c: dict[str, Any]) -> tuple[dict[str, Any], str]:
    c2 = {**c, "aud": OTHER_SERVICE}
    return c2, b.sign(c2)


BAD_ASSERTIONS: dict[str, Callable[[FakeBus, dict[str, Any]], tuple[dict[str, Any], str]]] = {
    "expired": _expired,
    "wrong audience": _wrong_audience,
    "wrong key": lambda b, c: (c, b.sign(c, key=generate_ed25519(), kid=b.kid())),
    "alg none": lambda b, c: (c, _alg_none(b, c)),
    "tampered payload": lambda b, c: (c, _tampered(b, c)),
    "sub differs from GSB-Client": _signed(sub=CLIENT + "x"),
    "rid differs from GSB-Request-Id": _signed(rid="other"),
    "no rid": _signed(rid=None),
    "not a JWT": lambda b, c: (c, "garbage"),
    "HS256 with a shared secret": lambda b, c: (
        c,
        jwt.encode(c, "secret-" * 5, algorithm="HS256", headers={"kid": b.kid()}),
    ),
}


@pytest.mark.parametrize("case", list(BAD_ASSERTIONS))
def test_an_invalid_assertion_is_refused_with_401(provider: ProviderSetup, case: str) -> None:
    claims, token = BAD_ASSERTIONS[case](provider.bus, provider.bus.claims())
    headers = provider.bus.headers(claims, token)
    resp = httpx.get(f"{provider.bus.provider_url}/whoami", headers=headers)
    assert resp.status_code == 401, case
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["code"] == "unauthenticated"
    assert provider.middleware.refused == 1


def test_a_valid_assertion_sent_directly_is_accepted(provider: ProviderSetup) -> None:
    headers = provider.bus.headers(provider.bus.claims())
    resp = httpx.get(f"{provider.bus.provider_url}/whoami", headers=headers)
    assert resp.status_code == 200
    assert resp.json()["rid"] == headers["GSB-Request-Id"]


def test_an_unknown_key_id_makes_the_verifier_refetch_the_jwks_but_not_too_often(
    provider: ProviderSetup,
) -> None:
    bus, verifier = provider.bus, provider.verifier
    verifier.verify(bus.sign(bus.claims()))
    assert bus.jwks_hits == 1
    bus.keys.append(generate_ed25519())  # the bus rotates its assertion key
    time.sleep(0.6)
    claims = verifier.verify(bus.sign(bus.claims()))
    assert claims.client == CLIENT
    assert bus.jwks_hits == 2
    forged = bus.sign(bus.claims(), key=generate_ed25519(), kid="forged-kid")
    with pytest.raises(InvalidAssertion):
        verifier.verify(forged)
    assert bus.jwks_hits == 2  # within the refetch interval: no new fetch


def test_the_async_verifier_shares_the_key_cache_and_checks_the_headers(
    provider: ProviderSetup,
) -> None:
    bus, verifier = provider.bus, provider.verifier
    claims = bus.claims(purpose=None, subject_present=False)
    token = bus.sign(claims)
    got = asyncio.run(verifier.averify(token, client=CLIENT, request_id=claims["rid"]))
    assert got.purpose is None and got.subject_present is False
    assert got.expires_at.timestamp() == claims["exp"]
    with pytest.raises(InvalidAssertion, match="GSB-Client"):
        asyncio.run(verifier.averify(token, client="TEST/GOV/14003000014/other"))
    verifier.verify(token)
    assert bus.jwks_hits == 1


def test_verify_request_headers_reads_any_header_map_case_insensitively(
    provider: ProviderSetup,
) -> None:
    claims = provider.bus.claims()
    headers = {k.lower(): v for k, v in provider.bus.headers(claims).items()}
    assert verify_request_headers(provider.verifier, headers).service == SERVICE
    with pytest.raises(InvalidAssertion, match="no GSB-Assertion"):
        verify_request_headers(provider.verifier, {"GSB-Client": CLIENT})
    headers["gsb-service"] = OTHER_SERVICE
    with pytest.raises(InvalidAssertion, match="GSB-Service"):
        verify_request_headers(provider.verifier, headers)


# --- token acquisition: an in-test token endpoint and /r1/ echo ------------------------


class FakeAuth:
    """Verifies client assertions (or secrets), issues tokens and echoes authorised calls."""

    def __init__(self, expires_in: int = 300) -> None:
        self.jwks: dict[str, list[dict[str, str]]] = {}
        self.secrets: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        self.token_requests = 0
        self.expires_in = expires_in
        self.seen_jti: set[str] = set()

    def register(self, client_id: str, key: PrivateKey) -> None:
        self.jwks.setdefault(client_id, []).append(public_jwk(key))

    def _client_of(self, form: Mapping[str, Any], token_url: str) -> str:
        if "client_secret" in form:
            client_id = str(form["client_id"])
            if self.secrets.get(client_id) != form["client_secret"]:
                raise ValueError("wrong secret")
            return client_id
        assert form["client_assertion_type"].endswith(":jwt-bearer")
        assertion = str(form["client_assertion"])
        kid = jwt.get_unverified_header(assertion)["kid"]
        client_id = jwt.decode(assertion, options={"verify_signature": False})["iss"]
        jwk = next(j for j in self.jwks.get(client_id, []) if j["kid"] == kid)
        key, alg = jwk_to_public_key(jwk)
        claims = jwt.decode(
            assertion,
            key,
            algorithms=[alg],
            audience=token_url,
            options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
        )
        if claims["sub"] != client_id or claims["exp"] - claims["iat"] > 300:
            raise ValueError("bad claims")
        if claims["jti"] in self.seen_jti:
            raise ValueError("replayed")
        self.seen_jti.add(claims["jti"])
        return client_id

    def app(self) -> Starlette:
        async def token(request: Request) -> Response:
            self.token_requests += 1
            form = await request.form()
            try:
                assert form["grant_type"] == "client_credentials"
                client_id = self._client_of(form, str(request.url))
            except Exception as exc:
                body = {"error": "invalid_client", "error_description": str(exc)}
                return JSONResponse(body, status_code=401)
            access = secrets.token_urlsafe(16)
            self.tokens[access] = client_id
            body = {"access_token": access, "token_type": "Bearer", "expires_in": self.expires_in}
            return JSONResponse(body)

        async def echo(request: Request) -> Response:
            bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
            client = self.tokens.get(bearer)
            if client is None:
                problem = {
                    "type": "urn:gsb:problem:unauthenticated",
                    "status": 401,
                    "code": "unauthenticated",
                    "detail": "no valid token",
                }
                return JSONResponse(
                    problem,
                    401,
                    {"GSB-Error": "unauthenticated"},
                    media_type="application/problem+json",
                )
            path = request.path_params["rest"]
            if path.endswith("/deny"):
                problem = {
                    "type": "urn:gsb:problem:access-denied",
                    "status": 403,
                    "code": "access-denied",
                    "detail": "no grant",
                }
                return JSONResponse(
                    problem,
                    403,
                    {"GSB-Error": "access-denied"},
                    media_type="application/problem+json",
                )
            if path.endswith("/missing"):
                return JSONResponse({"message_fa": "یافت نشد"}, 404)
            gsb = {k: v for k, v in request.headers.items() if k.startswith("gsb-")}
            body = (await request.body()).decode()
            return JSONResponse(
                {
                    "client": client,
                    "method": request.method,
                    "path": "/" + path,
                    "query": request.url.query,
                    "gsb": gsb,
                    "body": body,
                    "content_type": request.headers.get("content-type"),
                }
            )

        return Starlette(
            routes=[
                Route("/oauth/token", token, methods=["POST"]),
                Route("/r1/{rest:path}", echo, methods=["GET", "POST", "PUT", "DELETE"]),
                Route("/e1/{rest:path}", echo, methods=["POST"]),
            ]
        )


@pytest.fixture
def auth() -> Iterator[tuple[FakeAuth, str]]:
    fake = FakeAuth()
    with serve(fake.app()) as url:
        yield fake, url


KEY_MAKERS = {"Ed25519": generate_ed25519, "P-256": generate_p256}


@pytest.mark.parametrize("kind", list(KEY_MAKERS))
def test_a_client_with_a_key_gets_one_token_and_reuses_it_for_several_calls(
    auth: tuple[FakeAuth, str], kind: str
) -> None:
    fake, url = auth
    key = KEY_MAKERS[kind]()
    fake.register(CLIENT, key)
    with GsbClient(url, CLIENT, private_key_pem=private_pem(key)) as client:
        for _ in range(3):
            resp = client.call(
                SERVICE,
                "/persons/" + SUBJECT,
                purpose="identity-verification",
                subject=SUBJECT,
                user="clerk-7",
                request_id="r-1",
            )
            assert resp.status_code == 200
    assert fake.token_requests == 1
    echoed = resp.json()
    assert echoed["client"] == CLIENT
    assert echoed["path"] == f"/{SERVICE}/persons/{SUBJECT}"
    assert echoed["gsb"] == {
        "gsb-purpose": "identity-verification",
        "gsb-subject": SUBJECT,
        "gsb-user": "clerk-7",
        "gsb-request-id": "r-1",
    }


def test_a_client_reads_its_private_key_from_a_pem_file(
    auth: tuple[FakeAuth, str], tmp_path: Any
) -> None:
    fake, url = auth
    key = generate_p256()
    fake.register(CLIENT, key)
    (tmp_path / "key.pem").write_bytes(private_pem(key))
    with GsbClient(url, CLIENT, private_key_file=str(tmp_path / "key.pem")) as client:
        assert client.call_json(SERVICE, "/x", params={"a": "1"})["query"] == "a=1"


def test_a_refused_token_is_renewed_once_and_the_call_retried(auth: tuple[FakeAuth, str]) -> None:
    fake, url = auth
    key = generate_ed25519()
    fake.register(CLIENT, key)
    with GsbClient(url, CLIENT, private_key_pem=private_pem(key)) as client:
        assert client.call(SERVICE).status_code == 200
        fake.tokens.clear()  # the bus forgets every token (say, a key rotation)
        assert client.call(SERVICE).status_code == 200
    assert fake.token_requests == 2


def test_a_token_with_less_than_30_seconds_left_is_renewed_before_the_call(
    auth: tuple[FakeAuth, str],
) -> None:
    fake, url = auth
    fake.expires_in = 25
    fake.secrets[CLIENT] = "s3cret"
    with GsbClient(url, CLIENT, client_secret="s3cret") as client:
        client.call(SERVICE)
        client.call(SERVICE)
    assert fake.token_requests == 2


def test_a_refused_client_assertion_raises_a_token_error(auth: tuple[FakeAuth, str]) -> None:
    fake, url = auth
    fake.register(CLIENT, generate_ed25519())
    with GsbClient(url, CLIENT, private_key_pem=private_pem(generate_ed25519())) as client:
        with pytest.raises(TokenError) as info:
            client.call(SERVICE)
    assert info.value.error == "invalid_client"
    assert info.value.status == 401


def test_call_json_raises_a_gsb_error_for_bus_errors_and_a_provider_error_for_the_rest(
    auth: tuple[FakeAuth, str],
) -> None:
    fake, url = auth
    fake.secrets[CLIENT] = "s3cret"
    with GsbClient(url, CLIENT, client_secret="s3cret") as client:
        with pytest.raises(GsbError) as bus_error:
            client.call_json(SERVICE, "/deny")
        with pytest.raises(ProviderError) as provider_error:
            client.call_json(SERVICE, "/missing")
        posted = client.call_json(SERVICE, "/apps", method="POST", json={"نام": "علی"})
    assert not isinstance(bus_error.value, ProviderError)
    assert (bus_error.value.code, bus_error.value.status) == ("access-denied", 403)
    assert bus_error.value.problem["detail"] == "no grant"
    assert provider_error.value.code == "provider-error"
    assert provider_error.value.problem == {"message_fa": "یافت نشد"}
    assert json.loads(posted["body"]) == {"نام": "علی"}
    assert posted["content_type"] == "application/json"


def test_publish_posts_a_complete_cloudevent_to_the_topic(auth: tuple[FakeAuth, str]) -> None:
    fake, url = auth
    fake.secrets[CLIENT] = "s3cret"
    topic = "TEST/GOV/14003000014/tester/birth-registered.v1"
    with GsbClient(url, CLIENT, client_secret="s3cret") as client:
        resp = client.publish(topic, {"type": "ir.gov.birth-registered", "data": {"a": 1}})
    echoed = resp.json()
    assert echoed["path"] == "/" + topic
    assert echoed["content_type"] == "application/cloudevents+json"
    event = json.loads(echoed["body"])
    assert event["specversion"] == "1.0" and event["source"] == CLIENT
    assert event["id"] and event["time"] and event["data"] == {"a": 1}


@pytest.mark.parametrize("kind", list(KEY_MAKERS))
def test_the_async_client_caches_renews_and_calls_like_the_sync_one(
    auth: tuple[FakeAuth, str], kind: str
) -> None:
    fake, url = auth
    key = KEY_MAKERS[kind]()
    fake.register(CLIENT, key)

    async def scenario() -> list[int]:
        async with AsyncGsbClient(url, CLIENT, private_key_pem=private_pem(key)) as client:
            first = await asyncio.gather(*(client.call(SERVICE, "/a") for _ in range(5)))
            fake.tokens.clear()
            again = await client.call_json(SERVICE, "/b", purpose="tax-assessment")
            assert again["gsb"]["gsb-purpose"] == "tax-assessment"
            with pytest.raises(GsbError):
                await client.call_json(SERVICE, "/deny")
            return [r.status_code for r in first]

    assert asyncio.run(scenario()) == [200] * 5
    assert fake.token_requests == 2
