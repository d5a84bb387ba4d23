"""X.509 certificates for mutual TLS: thumbprints (RFC 8705) and self-signed certificates."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import re
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

THUMBPRINT_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def thumbprint(der: bytes) -> str:
    """``x5t#S256``: the base64url SHA-256 of a certificate's DER encoding, unpadded."""
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def pem_thumbprint(pem: str | bytes) -> tuple[str, str]:
    """(thumbprint, normalised PEM) of one PEM certificate. Raises ValueError."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise ValueError(f"not a PEM certificate: {exc}") from None
    der = cert.public_bytes(serialization.Encoding.DER)
    return thumbprint(der), cert.public_bytes(serialization.Encoding.PEM).decode()


def self_signed(
    common_name: str,
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey,
    *,
    hosts: Iterable[str] = (),
    days: int = 365,
) -> bytes:
    """A self-signed certificate (PEM) for ``key``: a system's client certificate, or with
    ``hosts`` (names or IP addresses) a server certificate for a sandbox."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    alt: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    cert = builder.sign(key, algorithm)
    return cert.public_bytes(serialization.Encoding.PEM)
