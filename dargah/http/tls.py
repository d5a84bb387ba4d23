"""TLS for the server: its certificate, reloaded without a restart, and clients' certificates.

TLS 1.2 and 1.3 only; on TLS 1.2 only ECDHE key exchange with AEAD ciphers (TLS 1.3's suites
are all of that kind); HTTP/1.1 is the one protocol offered (ALPN). A client may present a
certificate (mutual TLS, RFC 8705): it is accepted when a configured CA issued it, or when it
is a self-signed certificate an agency registered (:func:`trust_client_certificates`), and the
application sees its SHA-256 thumbprint in the request's scope. Clients without a certificate
are served as before.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import ssl
from collections.abc import Iterable

log = logging.getLogger("dargah.http")

# TLS 1.2: forward secrecy and AEAD only. TLS 1.3 suites are not chosen by this string.
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
_LIVE: list[ServerTls] = []
_TRUSTED: dict[str, str] = {}  # client certificates to accept, by a digest of their PEM


class ServerTls:
    """The TLS side of one listening address."""

    def __init__(self, cert_file: str, key_file: str, client_ca_file: str = "") -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.client_ca_file = client_ca_file
        self.context = _context()
        self.context.load_cert_chain(cert_file, key_file)
        # A client certificate is asked for, never required: browsers and agencies that
        # authenticate with signed assertions connect without one.
        self.context.verify_mode = ssl.CERT_OPTIONAL
        if client_ca_file:
            self.context.load_verify_locations(cafile=client_ca_file)
        self._stamp = self._files_stamp()
        self._trusted: set[str] = set()
        for pem in _TRUSTED.values():
            self.trust(pem)
        _LIVE.append(self)

    def _files_stamp(self) -> tuple[tuple[int, int], ...]:
        out = []
        for path in (self.cert_file, self.key_file):
            try:
                st = os.stat(path)
                out.append((st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((0, 0))
        return tuple(out)

    def reload(self) -> bool:
        """Load the certificate and key again (new connections get them). A pair that does not
        load (half-written, mismatched) is refused and the one in use stays."""
        self._stamp = self._files_stamp()
        try:
            _context().load_cert_chain(self.cert_file, self.key_file)  # check before use
            self.context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            log.error("the TLS certificate was not reloaded (%s); the previous one stays", exc)
            return False
        log.info("TLS certificate reloaded from %s", self.cert_file)
        return True

    def reload_if_changed(self) -> bool:
        if self._files_stamp() == self._stamp:
            return False
        return self.reload()

    def trust(self, pem: str) -> None:
        """Accept this (self-signed) client certificate from now on."""
        key = hashlib.sha256(pem.encode()).hexdigest()
        if key in self._trusted:
            return
        try:
            self.context.load_verify_locations(cadata=pem)
        except (ssl.SSLError, ValueError) as exc:
            log.warning("a registered client certificate could not be trusted: %s", exc)
            return
        self._trusted.add(key)


def _context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_ciphers(CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def trust_client_certificates(pems: Iterable[str]) -> None:
    """Let every TLS address of this process accept these client certificates (the self-signed
    system certificates agencies registered). Certificates are only ever added: a revoked one
    still completes a handshake, and the application refuses what it presents."""
    for pem in pems:
        key = hashlib.sha256(pem.encode()).hexdigest()
        if key in _TRUSTED:
            continue
        _TRUSTED[key] = pem
        for tls in _LIVE:
            tls.trust(pem)


def reload_all(only_changed: bool = False) -> None:
    for tls in _LIVE:
        if only_changed:
            tls.reload_if_changed()
        else:
            tls.reload()


def thumbprint(der: bytes) -> str:
    """RFC 8705 ``x5t#S256``: the base64url SHA-256 of a certificate's DER encoding."""
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def cert_from_header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The thumbprint of the certificate in an RFC 9440 ``Client-Cert`` header (``:base64:``)."""
    for n, value in headers:
        if n == name:
            value = value.strip()
            if len(value) < 3 or value[:1] != b":" or value[-1:] != b":":
                return None
            try:
                return thumbprint(base64.b64decode(value[1:-1], validate=True))
            except ValueError:
                return None
    return None
