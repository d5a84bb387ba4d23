"""Protocol §2: the token endpoint, access tokens on ``/r1/``, and revocation within 5 s.

Client assertions are built here with PyJWT from each client's key file, as an
agency would. One sandbox bus (``TEST``) and one production bus (``IR``) serve
the module; every test that revokes something has its own client.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from sqlalchemy import select, update

from dargah.core.identifiers import make_legal_id
from dargah.core.keys import generate_ed25519, load_private_pem, private_pem, public_jwk
from dargah.registry import members
from dargah.registry.instance import hash_secret
from dargah.store.tables import audit_log, bus_keys, subsystems
from tests.harness import CONSUMER_LEGAL_ID, Client, World, make_world
from tests.providers import Provider
from tests.test_conformance_errors import HTTP, assert_problem, call, database, rows

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REVOKED_MEMBER = make_legal_id("1400987654")
# Everything secret seen in this module: none of it may ever show up in logs.
SENSITIVE: set[str] = set()


def b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def assertion(
    w: World,
    client: Client,
    *,
    aud: str | None = None,
    lifetime: int = 60,
    iat: int | None = None,
    jti: str | None = None,
    key_file: Path | None = None,
    kid: str | None = None,
    **claims: Any,
) -> str:
    """A client assertion (RFC 7523) signed with the client's key file."""
    key = load_private_pem((key_file or client.key_file).read_bytes())
    alg = "EdDSA" if isinstance(key, ed25519.Ed25519PrivateKey) else "ES256"
    assert isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey)
    now = int(time.time()) if iat is None else iat
    payload = {
        "iss": client.id,
        "sub": client.id,
        "aud": aud or f"{w.url}/oauth/token",
        "iat": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex if jti is None else jti,
        **claims,
    }
    token = jwt.encode(payload, key, algorithm=alg, headers={"kid": kid or client.kid})
    SENSITIVE.add(token)
    return token


def token_request(w: World, data: dict[str, str], **kw: Any) -> httpx.Response:
    r = HTTP.post(f"{w.url}/oauth/token", data=data, **kw)
    if r.status_code == 200:
        SENSITIVE.add(r.json()["access_token"])
    return r


def by_assertion(w: World, signed: str) -> httpx.Response:
    return token_request(
        w,
        {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed,
        },
    )


def access_token(w: World, client: Client, **kw: Any) -> str:
    r = by_assertion(w, assertion(w, client, **kw))
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def assert_granted(r: httpx.Response, ttl: int | None = None) -> str:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert "no-store" in r.headers["cache-control"]
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert isinstance(body["expires_in"], int) and 60 <= body["expires_in"] <= 600
    if ttl is not None:
        assert body["expires_in"] == ttl
    return str(body["access_token"])


def assert_invalid_client(r: httpx.Response) -> str:
    """An RFC 6749 §5.2 ``invalid_client`` answer; returns its description."""
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert "no-store" in r.headers["cache-control"]
    body = r.json()
    assert body["error"] == "invalid_client"
    assert isinstance(body.get("error_description", ""), str)
    assert set(body) <= {"error", "error_description", "error_uri"}
    return str(body.get("error_description", ""))


class TW:
    """The sandbox world: clients for each test and a plain service all of them may call."""

    def __init__(self, w: World) -> None:
        self.w = w
        self.engine = w.engine
        self.sid = w.add_service("plain.v1")
        self.clients: dict[str, Client] = {"cons": w.clients["cons"], "other": w.clients["other"]}
        self.clients["ec"] = w.add_client("ec", CONSUMER_LEGAL_ID, p256=True)
        for name in ("key-revoked", "sub-revoked", "replay"):
            self.clients[name] = w.add_client(name, CONSUMER_LEGAL_ID)
        with self.engine.begin() as conn:
            members.add_member(conn, w.member(REVOKED_MEMBER), "دستگاه لغوشده", "test")
        self.clients["mem-revoked"] = w.add_client("mem-revoked", REVOKED_MEMBER)
        # a second key for the key-revocation client: rotation keeps it working
        second = generate_ed25519()
        self.second_key = w.settings.home / "key-revoked-2.pem"
        self.second_key.write_bytes(private_pem(second))
        with self.engine.begin() as conn:
            kid = members.add_key(conn, self.clients["key-revoked"].id, public_jwk(second), "t")
        self.second_kid = str(kid["kid"])
        for name in self.clients:
            w.grant(name, self.sid)
            SENSITIVE.add(self.clients[name].secret)

    def call(self, tok: str | None) -> httpx.Response:
        return call(self.w, self.sid, "/x", token=tok, purpose=None, subject=None)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def tw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, provider: Provider
) -> Iterator[TW]:
    """On both backends: the jti store and the revocation feed live in the database."""
    with database(request.param) as url:
        home = tmp_path_factory.mktemp("tokens") / "home"
        w = make_world(home, provider.url, url)
        try:
            t = TW(w)
            w.start(DARGAH_LOG_LEVEL="debug", DARGAH_TOKEN_TTL="9999")
            yield t
            w.stop()  # flush everything the bus writes before reading it
            assert_nothing_sensitive_in(home / "bus.log", t.engine)
        finally:
            w.stop()
            t.engine.dispose()


@pytest.fixture(scope="module")
def irw(tmp_path_factory: pytest.TempPathFactory, provider: Provider) -> Iterator[World]:
    """A production instance (IR): secrets are refused there."""
    home = tmp_path_factory.mktemp("tokens-ir") / "home"
    w = make_world(home, provider.url, instance="IR")
    try:
        w.grant("cons", w.add_service("plain.v1"))
        with w.engine.begin() as conn:  # a secret the registry would never issue on IR
            conn.execute(
                update(subsystems)
                .where(subsystems.c.id == w.clients["cons"].id)
                .values(secret_hash=hash_secret("production-secret-0123456789"))
            )
        w.start(DARGAH_TOKEN_TTL="5")
        yield w
    finally:
        w.stop()


def assert_nothing_sensitive_in(bus_log: Path, engine: Any) -> None:
    secrets_seen = {s for s in SENSITIVE if s}
    assert secrets_seen
    texts = {
        "bus.log": bus_log.read_text(errors="replace"),
        "message log": json.dumps(rows(engine), default=str),
    }
    with engine.connect() as conn:
        texts["audit trail"] = json.dumps(
            [dict(r) for r in conn.execute(select(audit_log)).mappings()],
            default=str,
            ensure_ascii=False,
        )
    for where, text in texts.items():
        for s in secrets_seen:
            assert s not in text, f"a secret, token or assertion is in the {where}"
            # nor any of a token's or assertion's signature
            if s.count(".") == 2 and len(s.rsplit(".", 1)[1]) > 16:
                assert s.rsplit(".", 1)[1] not in text, f"a signature is in the {where}"


# -- issuing ------------------------------------------------------------------------------


def test_private_key_jwt_with_an_ed25519_key_gets_a_token_that_calls_the_bus(tw: TW) -> None:
    tok = assert_granted(by_assertion(tw.w, assertion(tw.w, tw.clients["cons"])), ttl=600)
    r = tw.call(tok)
    assert r.status_code == 200 and r.json()["headers"]["gsb-client"] == tw.clients["cons"].id


def test_private_key_jwt_with_a_p256_key_gets_a_token_that_calls_the_bus(tw: TW) -> None:
    signed = assertion(tw.w, tw.clients["ec"])
    assert jwt.get_unverified_header(signed)["alg"] == "ES256"
    tok = assert_granted(by_assertion(tw.w, signed))
    r = tw.call(tok)
    assert r.status_code == 200 and r.json()["headers"]["gsb-client"] == tw.clients["ec"].id


def test_a_client_secret_in_the_form_or_http_basic_gets_a_token_on_a_sandbox(tw: TW) -> None:
    c = tw.clients["cons"]
    form = {"grant_type": "client_credentials", "client_id": c.id, "client_secret": c.secret}
    tok = assert_granted(token_request(tw.w, form))
    assert tw.call(tok).status_code == 200
    tok = assert_granted(
        token_request(tw.w, {"grant_type": "client_credentials"}, auth=(c.id, c.secret))
    )
    assert tw.call(tok).status_code == 200
    # RFC 6749 §2.3.1: the Basic credentials are form-urlencoded first ('/' is %2F)
    from urllib.parse import quote

    basic = base64.b64encode(f"{quote(c.id, safe='')}:{quote(c.secret, safe='')}".encode()).decode()
    r = token_request(
        tw.w, {"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert tw.call(assert_granted(r)).status_code == 200


def test_expires_in_stays_between_60_and_600_whatever_the_setting(tw: TW, irw: World) -> None:
    # the TEST bus runs with DARGAH_TOKEN_TTL=9999, the IR bus with 5
    assert_granted(by_assertion(tw.w, assertion(tw.w, tw.clients["cons"])), ttl=600)
    assert_granted(by_assertion(irw, assertion(irw, irw.clients["cons"])), ttl=60)


# -- refusals -----------------------------------------------------------------------------


def _foreign_key(tw: TW) -> Path:
    path = tw.w.settings.home / "foreign.pem"
    if not path.exists():
        path.write_bytes(private_pem(generate_ed25519()))
    return path


REFUSALS: dict[str, Any] = {
    "expired": lambda tw, c: assertion(tw.w, c, iat=int(time.time()) - 200, lifetime=100),
    "wrong audience": lambda tw, c: assertion(tw.w, c, aud="https://elsewhere.example/oauth/token"),
    "audience of another path": lambda tw, c: assertion(tw.w, c, aud=f"{tw.w.url}/r1"),
    "wrong key under the registered kid": lambda tw, c: assertion(
        tw.w, c, key_file=_foreign_key(tw)
    ),
    "unregistered key": lambda tw, c: assertion(tw.w, c, key_file=_foreign_key(tw), kid="nope"),
    "another client's key": lambda tw, c: assertion(
        tw.w, c, key_file=tw.clients["other"].key_file, kid=tw.clients["other"].kid
    ),
    "alg none": lambda tw, c: b64({"alg": "none", "kid": c.kid})
    + "."
    + b64(
        {
            "iss": c.id,
            "sub": c.id,
            "aud": f"{tw.w.url}/oauth/token",
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
            "jti": uuid.uuid4().hex,
        }
    )
    + ".",
    "HS256 with the public key as secret": lambda tw, c: jwt.encode(
        {
            "iss": c.id,
            "sub": c.id,
            "aud": f"{tw.w.url}/oauth/token",
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
            "jti": uuid.uuid4().hex,
        },
        public_jwk(load_private_pem(c.key_file.read_bytes()))["x"].encode(),
        algorithm="HS256",
        headers={"kid": c.kid},
    ),
    "exp more than 300 s after iat": lambda tw, c: assertion(tw.w, c, lifetime=301),
    "no jti": lambda tw, c: assertion(tw.w, c, jti=""),
    "iss and sub differ": lambda tw, c: assertion(tw.w, c, sub=tw.clients["other"].id),
    "unknown client": lambda tw, c: assertion(
        tw.w, Client(f"{tw.w.member(CONSUMER_LEGAL_ID)}/ghost", "", _foreign_key(tw), "ghost-kid")
    ),
    "malformed": lambda tw, c: "not.a.jwt",
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_bad_client_assertion_is_refused_with_invalid_client(tw: TW, case: str) -> None:
    signed = REFUSALS[case](tw, tw.clients["cons"])
    SENSITIVE.add(signed)
    assert_invalid_client(by_assertion(tw.w, signed))


def test_a_replayed_assertion_jti_is_refused(tw: TW) -> None:
    c = tw.clients["replay"]
    jti = uuid.uuid4().hex
    assert_granted(by_assertion(tw.w, assertion(tw.w, c, jti=jti)))
    # the same assertion again, and a new one reusing its jti
    assert_invalid_client(by_assertion(tw.w, assertion(tw.w, c, jti=jti)))
    assert_invalid_client(by_assertion(tw.w, assertion(tw.w, c, jti=jti, lifetime=120)))
    # a jti as long as a client may make it does not break the endpoint
    long_jti = "j" * 255
    assert_granted(by_assertion(tw.w, assertion(tw.w, c, jti=long_jti)))
    assert_invalid_client(by_assertion(tw.w, assertion(tw.w, c, jti=long_jti)))


def test_a_wrong_or_unknown_secret_is_refused_with_invalid_client(tw: TW) -> None:
    c = tw.clients["cons"]
    for client_id, secret in (
        (c.id, "wrong"),
        (c.id, ""),
        (c.id + "x", c.secret),
        (tw.clients["other"].id, c.secret),
    ):
        form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
        assert_invalid_client(token_request(tw.w, form))
    assert_invalid_client(
        token_request(tw.w, {"grant_type": "client_credentials"}, auth=(c.id, "wrong"))
    )
    assert_invalid_client(token_request(tw.w, {"grant_type": "client_credentials"}))


def test_other_malformed_token_requests_get_rfc_6749_errors(tw: TW) -> None:
    c = tw.clients["cons"]
    r = token_request(
        tw.w, {"grant_type": "password", "client_id": c.id, "client_secret": c.secret}
    )
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = token_request(
        tw.w,
        {
            "grant_type": "client_credentials",
            "client_assertion_type": "x",
            "client_assertion": assertion(tw.w, c),
        },
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = HTTP.get(f"{tw.w.url}/oauth/token")
    assert r.status_code in (400, 405) and r.json()["error"] == "invalid_request"


def test_client_secrets_are_refused_on_a_production_instance(irw: World) -> None:
    c = irw.clients["cons"]
    secret = "production-secret-0123456789"
    SENSITIVE.add(secret)
    form = {"grant_type": "client_credentials", "client_id": c.id, "client_secret": secret}
    assert "production" in assert_invalid_client(token_request(irw, form))
    assert_invalid_client(
        token_request(irw, {"grant_type": "client_credentials"}, auth=(c.id, secret))
    )
    # keys work there
    tok = assert_granted(by_assertion(irw, assertion(irw, c)))
    r = call(irw, irw.sid("plain.v1"), "/x", token=tok, purpose=None, subject=None)
    assert r.status_code == 200


# -- access tokens on /r1/ ----------------------------------------------------------------


def test_a_forged_or_altered_access_token_is_refused(tw: TW, irw: World) -> None:
    tok = access_token(tw.w, tw.clients["cons"])
    head, payload, sig = tok.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = [
        f"{head}.{b64({**claims, 'sub': tw.clients['other'].id})}.{sig}",  # altered claims
        f"{head}.{b64({**claims, 'exp': claims['exp'] + 3600})}.{sig}",
        f"{b64({'alg': 'none', 'kid': json.loads(base64.urlsafe_b64decode(head + '=='))['kid']})}"
        f".{payload}.",
        f"{head}.{payload}.{sig[::-1]}",
        access_token(irw, irw.clients["cons"]),  # another instance's key
        assertion(tw.w, tw.clients["cons"]),  # a client assertion is no access token
    ]
    for bad in forged:
        SENSITIVE.add(bad)
        r = tw.call(bad)
        assert_problem(tw.engine, r, "unauthenticated")
    assert tw.call(tok).status_code == 200


def test_an_expired_access_token_is_refused(tw: TW) -> None:
    # The bus's token MAC key from the database, to sign what the bus itself would sign.
    with tw.engine.connect() as conn:
        key = conn.execute(
            select(bus_keys.c.kid, bus_keys.c.private_pem).where(
                bus_keys.c.use == "token", bus_keys.c.status == "active"
            )
        ).one()
    c = tw.clients["cons"]
    now = int(time.time())

    def sign(iat: int, exp: int) -> str:
        claims = {"sub": c.id, "kid": c.kid, "iat": iat, "exp": exp, "jti": uuid.uuid4().hex}
        t = jwt.encode(
            claims,
            bytes.fromhex(key.private_pem),
            algorithm="HS256",
            headers={"kid": key.kid, "typ": "at+jwt"},
        )
        SENSITIVE.add(t)
        return t

    assert tw.call(sign(now, now + 120)).status_code == 200  # the forging is faithful
    for iat, exp in ((now - 400, now - 100), (now - 300, now - 1)):
        r = tw.call(sign(iat, exp))
        assert_problem(tw.engine, r, "unauthenticated")


# -- revocation reaches tokens already issued within 5 s ---------------------------------


def _refused_within(tw: TW, tok: str, what: str) -> float:
    """Poll every 0.2 s from now until ``tok`` is refused; the delay in seconds."""
    started = time.monotonic()
    while time.monotonic() - started < 10:
        r = tw.call(tok)
        if r.status_code == 401:
            delay = time.monotonic() - started
            assert_problem(tw.engine, r, "unauthenticated")
            print(f"\n{what}: token refused {delay:.2f} s after the revocation")
            assert delay < 5, f"{what}: took {delay:.2f} s"
            return delay
        assert r.status_code == 200, r.text
        time.sleep(0.2)
    pytest.fail(f"{what}: a token issued before the revocation was still accepted after 10 s")


def test_a_revoked_key_stops_its_tokens_within_5_s(tw: TW) -> None:
    c = tw.clients["key-revoked"]
    tok = access_token(tw.w, c)
    rotated = access_token(tw.w, c, key_file=tw.second_key, kid=tw.second_kid)
    assert tw.call(tok).status_code == 200
    with tw.engine.begin() as conn:
        members.revoke_key(conn, c.id, c.kid, "test")
    _refused_within(tw, tok, "key revoked")
    assert_invalid_client(by_assertion(tw.w, assertion(tw.w, c)))
    # the subsystem's other key, and tokens issued with it, still work
    assert tw.call(rotated).status_code == 200
    assert (
        tw.call(access_token(tw.w, c, key_file=tw.second_key, kid=tw.second_kid)).status_code == 200
    )


def test_a_revoked_subsystem_stops_its_tokens_within_5_s(tw: TW) -> None:
    c = tw.clients["sub-revoked"]
    by_key = access_token(tw.w, c)
    form = {"grant_type": "client_credentials", "client_id": c.id, "client_secret": c.secret}
    by_secret = assert_granted(token_request(tw.w, form))
    assert tw.call(by_key).status_code == tw.call(by_secret).status_code == 200
    with tw.engine.begin() as conn:
        members.revoke_subsystem(conn, c.id, "test")
    _refused_within(tw, by_key, "subsystem revoked")
    assert tw.call(by_secret).status_code == 401
    assert_invalid_client(by_assertion(tw.w, assertion(tw.w, c)))
    assert_invalid_client(token_request(tw.w, form))


def test_a_revoked_member_stops_its_subsystems_tokens_within_5_s(tw: TW) -> None:
    c = tw.clients["mem-revoked"]
    tok = access_token(tw.w, c)
    assert tw.call(tok).status_code == 200
    with tw.engine.begin() as conn:
        members.set_member_status(conn, tw.w.member(REVOKED_MEMBER), "revoked", "test")
    _refused_within(tw, tok, "member revoked")
    assert_invalid_client(by_assertion(tw.w, assertion(tw.w, c)))
    # other members' clients are unaffected
    assert tw.call(access_token(tw.w, tw.clients["cons"])).status_code == 200


# -- secrecy ------------------------------------------------------------------------------


def test_tokens_secrets_and_assertions_never_appear_in_logs_metrics_or_the_message_log(
    tw: TW,
) -> None:
    c = tw.clients["cons"]
    form = {"grant_type": "client_credentials", "client_id": c.id, "client_secret": c.secret}
    toks = [assert_granted(token_request(tw.w, form)), access_token(tw.w, c)]
    for t in toks:
        assert tw.call(t).status_code == 200
    assert_invalid_client(token_request(tw.w, {**form, "client_secret": "wrong-secret-xyz"}))
    SENSITIVE.add("wrong-secret-xyz")
    metrics = HTTP.get(f"{tw.w.url}/metrics").text
    for s in SENSITIVE:
        if s:
            assert s not in metrics
    # the bus's own log and the message log so far (the fixture checks them again at the end)
    assert_nothing_sensitive_in(tw.w.settings.home / "bus.log", tw.engine)
