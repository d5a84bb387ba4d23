"""TLS in `dargah serve` and certificate-bound tokens (RFC 8705), end to end on loopback.

Certificates are made here with `cryptography`, in the test's own directory: the server's
(self-signed for 127.0.0.1), agencies' self-signed system certificates, and a CA with a
certificate it issued (registered by thumbprint only).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dargah.client import GsbClient
from dargah.core.certs import pem_thumbprint, self_signed
from dargah.core.keys import generate_p256, private_pem
from dargah.registry import certs
from dargah.server import trusted_proxy_check
from tests.harness import DARGAH, World, make_world
from tests.providers import Provider

HANDSHAKE_TIMEOUT = 3.0


@dataclass
class Pair:
    cert: Path
    key: Path

    @property
    def thumbprint(self) -> str:
        return pem_thumbprint(self.cert.read_bytes())[0]


def _pair(directory: Path, name: str, pem: bytes, key: ec.EllipticCurvePrivateKey) -> Pair:
    pair = Pair(directory / f"{name}.crt", directory / f"{name}.key")
    pair.cert.write_bytes(pem)
    pair.key.write_bytes(private_pem(key))
    return pair


def _self_signed(directory: Path, name: str, hosts: tuple[str, ...] = ()) -> Pair:
    key = generate_p256()
    return _pair(directory, name, self_signed(name, key, hosts=hosts), key)


def _issued_by_ca(directory: Path) -> tuple[Path, Pair]:
    """A CA certificate and a client certificate it issued."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agency CA")])
    now = datetime.datetime.now(datetime.UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca-issued system")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "agency-ca.crt"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return ca_file, _pair(
        directory, "ca-issued", leaf.public_bytes(serialization.Encoding.PEM), key
    )


@dataclass
class Tls:
    world: World
    server: Pair
    cons: Pair  # registered on "cons" (self-signed, whole)
    other: Pair  # registered on "other" (self-signed, through the management API)
    stranger: Pair  # registered nowhere
    issued: Pair  # CA-issued, registered on "third" by thumbprint only
    sid: str

    def client(self, name: str, pair: Pair | None, **kw: object) -> GsbClient:
        return GsbClient(
            self.world.url,
            self.world.clients[name].id,
            certificate_file=str(pair.cert) if pair else None,
            certificate_key_file=str(pair.key) if pair else None,
            ca_file=str(self.server.cert),
            **kw,  # type: ignore[arg-type]
        )

    def raw(self, pair: Pair | None) -> httpx.Client:
        ctx = ssl.create_default_context(cafile=str(self.server.cert))
        if pair is not None:
            ctx.load_cert_chain(str(pair.cert), str(pair.key))
        return httpx.Client(base_url=self.world.url, verify=ctx, timeout=10)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory, provider: Provider) -> Iterator[Tls]:
    home = tmp_path_factory.mktemp("tls") / "home"
    w = make_world(home, provider.url)
    certs_dir = home / "certs"
    certs_dir.mkdir()
    server = _self_signed(certs_dir, "server", ("127.0.0.1", "localhost"))
    cons, other, stranger = (_self_signed(certs_dir, n) for n in ("cons", "other", "stranger"))
    ca_file, issued = _issued_by_ca(certs_dir)
    w.add_client("third", "14007650912")
    sid = w.add_service("echo.v1", "/echo")
    for name in ("cons", "other", "third"):
        w.grant(name, sid)
    with w.engine.begin() as conn:
        certs.add_certificate(conn, w.clients["cons"].id, "test", pem=cons.cert.read_text())
        certs.add_certificate(conn, w.clients["third"].id, "test", thumbprint=issued.thumbprint)
    w.ca_file = str(server.cert)
    w.start(
        DARGAH_TLS_CERT_FILE=str(server.cert),
        DARGAH_TLS_KEY_FILE=str(server.key),
        DARGAH_TLS_CLIENT_CA_FILE=str(ca_file),
        DARGAH_HEADER_TIMEOUT=str(HANDSHAKE_TIMEOUT),
    )
    # "other" registers its certificate through the management API of the running bus.
    with httpx.Client(
        base_url=w.url,
        verify=ssl.create_default_context(cafile=str(server.cert)),
        headers={"Authorization": f"Bearer {w.admin_token}"},
    ) as api:
        client_path = w.clients["other"].id
        r = api.post(
            f"/api/v1/subsystems/{client_path}/certificates", json={"pem": other.cert.read_text()}
        )
        assert r.status_code == 201, r.text
        assert r.json()["thumbprint"] == other.thumbprint
    time.sleep(2.5)  # every bus process picks the change up within DARGAH_REFRESH_SECONDS
    try:
        yield Tls(w, server, cons, other, stranger, issued, sid)
    finally:
        w.stop()


def _claims(token: str) -> dict[str, object]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # TLS 1.0/1.1 asked for on purpose
def test_the_bus_speaks_tls_1_2_and_1_3_with_http_1_1_and_nothing_older(tls: Tls) -> None:
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = ssl.create_default_context(cafile=str(tls.server.cert))
        ctx.minimum_version = ctx.maximum_version = version
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with (
            socket.create_connection(("127.0.0.1", tls.world.port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s,
        ):
            assert s.version() == version.name.replace("_", ".")
            assert s.selected_alpn_protocol() == "http/1.1"
            cipher = s.cipher()
            assert cipher is not None and ("GCM" in cipher[0] or "CHACHA20" in cipher[0])
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("ALL:@SECLEVEL=0")
    with (
        socket.create_connection(("127.0.0.1", tls.world.port), timeout=5) as raw,
        pytest.raises(ssl.SSLError),
    ):
        old.wrap_socket(raw, server_hostname="127.0.0.1")


def test_a_handshake_that_never_comes_is_cut_at_the_header_deadline(tls: Tls) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", tls.world.port), timeout=30) as s:
        s.sendall(b"\x16\x03\x01")  # the start of a ClientHello, and then nothing
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
    assert time.monotonic() - started < HANDSHAKE_TIMEOUT + 5


def test_plain_http_on_the_tls_port_gets_no_answer_in_clear(tls: Tls) -> None:
    with socket.create_connection(("127.0.0.1", tls.world.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        try:
            while chunk := s.recv(4096):
                answer += chunk
        except OSError:
            pass
    assert b"alive" not in answer


def test_a_registered_certificate_alone_gets_a_bound_token_through_the_client_helper(
    tls: Tls,
) -> None:
    with tls.client("cons", tls.cons) as client:
        r = client.call(tls.sid, "/x", purpose="identity-verification", subject="0499370899")
        assert r.status_code == 200, r.text
        token = client.token()
    assert _claims(token)["cnf"] == {"x5t#S256": tls.cons.thumbprint}


def test_a_bound_token_is_refused_with_another_certificate_and_without_one(tls: Tls) -> None:
    with tls.client("cons", tls.cons) as client:
        token = client.token()
    path = f"/r1/{tls.sid}/x"
    headers = {"Authorization": f"Bearer {token}", "GSB-Purpose": "identity-verification"}
    with tls.raw(tls.cons) as same:
        assert same.get(path, headers=headers).status_code == 200
    for presented in (tls.other, None):
        with tls.raw(presented) as c:
            r = c.get(path, headers=headers)
            assert r.status_code == 401, r.text
            assert r.headers["gsb-error"] == "unauthenticated"
            assert r.json()["code"] == "unauthenticated"
            assert "certificate" in r.json()["detail"]
            meta = c.get("/r1/meta/services", headers=headers)
            assert meta.status_code == 401


def test_a_certificate_registered_to_another_client_does_not_authenticate(tls: Tls) -> None:
    with tls.raw(tls.other) as c:
        r = c.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "client_id": tls.world.clients["cons"].id},
        )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text


def test_an_unregistered_self_signed_certificate_is_refused_in_the_handshake(tls: Tls) -> None:
    with tls.raw(tls.stranger) as c, pytest.raises(httpx.HTTPError):
        c.get("/healthz").raise_for_status()


def test_a_ca_issued_certificate_registered_by_thumbprint_gets_a_bound_token(tls: Tls) -> None:
    with tls.client("third", tls.issued) as client:
        r = client.call(tls.sid, "/x", purpose="identity-verification", subject="0499370899")
        assert r.status_code == 200, r.text
        assert _claims(client.token())["cnf"] == {"x5t#S256": tls.issued.thumbprint}


def test_private_key_jwt_stays_and_binds_only_when_a_certificate_is_presented(tls: Tls) -> None:
    key_file = str(tls.world.clients["cons"].key_file)
    with tls.client("cons", None, private_key_file=key_file) as plain:
        r = plain.call(tls.sid, "/x", purpose="identity-verification", subject="0499370899")
        assert r.status_code == 200, r.text
        assert "cnf" not in _claims(plain.token())
    with tls.client("cons", tls.cons, private_key_file=key_file) as bound:
        assert _claims(bound.token())["cnf"] == {"x5t#S256": tls.cons.thumbprint}


def _served_cert(port: int) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw) as s,
    ):
        der = s.getpeercert(binary_form=True)
        assert der is not None
        return der


def _renew(server: Pair) -> bytes:
    """Replace the server's key and certificate files, as a renewal would; the new DER."""
    key = generate_p256()
    pem = self_signed("server", key, hosts=("127.0.0.1", "localhost"))
    server.key.write_bytes(private_pem(key))
    server.cert.write_bytes(pem)
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("how", ["SIGHUP", "the files changing"])
def test_a_renewed_certificate_is_served_without_a_restart(tls: Tls, how: str) -> None:
    before = _served_cert(tls.world.port)
    renewed = _renew(tls.server)
    if how == "SIGHUP":
        assert tls.world.bus is not None
        os.kill(tls.world.bus.pid, signal.SIGHUP)
    deadline = time.monotonic() + (5 if how == "SIGHUP" else 15)
    while _served_cert(tls.world.port) == before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _served_cert(tls.world.port) == renewed
    assert tls.world.bus is not None and tls.world.bus.poll() is None  # the same process
    with tls.client("cons", tls.cons) as client:  # verified against the new certificate
        assert client.call(tls.sid, "/x", purpose="identity-verification").status_code == 200


def test_a_broken_certificate_file_keeps_the_one_in_use(tls: Tls) -> None:
    before = _served_cert(tls.world.port)
    good = tls.server.cert.read_bytes()
    tls.server.cert.write_bytes(good[: len(good) // 2])  # half-written
    assert tls.world.bus is not None
    os.kill(tls.world.bus.pid, signal.SIGHUP)
    time.sleep(1.0)
    assert _served_cert(tls.world.port) == before
    tls.server.cert.write_bytes(good)


def test_revoking_a_certificate_stops_the_tokens_bound_to_it(tls: Tls) -> None:
    with tls.client("other", tls.other) as client:
        token = client.token()
        assert client.call(tls.sid, "/x", purpose="identity-verification").status_code == 200
    result = subprocess.run(
        [
            DARGAH,
            "cert",
            "revoke",
            tls.world.clients["other"].id,
            tls.other.thumbprint,
            "--home",
            str(tls.world.settings.home),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    headers = {"Authorization": f"Bearer {token}", "GSB-Purpose": "identity-verification"}
    deadline = time.monotonic() + 10
    with tls.raw(tls.other) as c:
        while time.monotonic() < deadline:
            r = c.get(f"/r1/{tls.sid}/x", headers=headers)
            if r.status_code == 401:
                break
            time.sleep(0.3)
    assert r.status_code == 401 and r.headers["gsb-error"] == "unauthenticated"


def _client_cert_header(pair: Pair) -> str:
    der = x509.load_pem_x509_certificate(pair.cert.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    return ":" + base64.b64encode(der).decode() + ":"


@pytest.mark.parametrize("trusted", [True, False], ids=["from a trusted proxy", "from anyone"])
def test_behind_a_tls_terminating_proxy_the_client_cert_header_counts_only_from_trusted_ones(
    tls: Tls, trusted: bool
) -> None:
    """A plain-HTTP bus behind a load balancer that verified the client certificate (RFC 9440)."""
    behind = dataclasses.replace(tls.world, bus=None, port=0, ca_file="")
    behind.start(
        DARGAH_CLIENT_CERT_HEADER="Client-Cert",
        DARGAH_TRUSTED_PROXIES="127.0.0.0/8" if trusted else "10.0.0.0/8,192.0.2.1",
    )
    try:
        header = {"Client-Cert": _client_cert_header(tls.cons)}
        form = {"grant_type": "client_credentials", "client_id": tls.world.clients["cons"].id}
        r = httpx.post(f"{behind.url}/oauth/token", data=form, headers=header)
        if not trusted:
            assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text
            return
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        assert _claims(token)["cnf"] == {"x5t#S256": tls.cons.thumbprint}
        call = {"Authorization": f"Bearer {token}", "GSB-Purpose": "identity-verification"}
        url = f"{behind.url}/r1/{tls.sid}/x"
        assert httpx.get(url, headers={**call, **header}).status_code == 200
        other = {"Client-Cert": _client_cert_header(tls.other)}
        for extra in ({}, other):
            r = httpx.get(url, headers={**call, **extra})
            assert r.status_code == 401 and r.headers["gsb-error"] == "unauthenticated"
    finally:
        behind.stop()


def test_trusted_proxies_are_matched_by_network_in_either_address_family() -> None:
    check = trusted_proxy_check(["10.0.0.0/8", "2001:db8::/32"])
    assert check is not None
    assert check("10.1.2.3") and check("::ffff:10.1.2.3") and check("2001:db8::1")
    assert not check("11.0.0.1") and not check("127.0.0.1") and not check("not an address")
    assert trusted_proxy_check([]) is None
