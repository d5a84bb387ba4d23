"""Client credentials for the bus's token endpoint (gsb-protocol §2).

Builds the RFC 7523 client assertion (EdDSA for Ed25519 keys, ES256 for P-256
keys, ``kid`` = the key's RFC 7638 thumbprint), the client_secret_post form, or
for mutual TLS (RFC 8705, the client certificate is the credential) the form
with ``client_id`` alone,
and keeps the access token until less than :data:`REFRESH_MARGIN` seconds of
it remain. Shared by the sync and the async consumer clients; does no I/O.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519

from dargah.core.keys import PrivateKey, load_private_pem, public_jwk

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 60
REFRESH_MARGIN = 30.0


class TokenError(Exception):
    """The token endpoint refused to issue a token (RFC 6749 §5.2 error body)."""

    def __init__(self, status: int, error: str, description: str, body: dict[str, Any]) -> None:
        super().__init__(f"token request refused ({status} {error}): {description}")
        self.status = status
        self.error = error
        self.description = description
        self.body = body


@dataclass(frozen=True, slots=True)
class Credentials:
    """How one subsystem authenticates to the token endpoint."""

    client_id: str
    token_url: str
    key: PrivateKey | None = None
    secret: str | None = None
    mtls: bool = False  # the connection's client certificate authenticates

    @classmethod
    def build(
        cls,
        client_id: str,
        token_url: str,
        *,
        private_key_pem: bytes | None = None,
        private_key_file: str | None = None,
        client_secret: str | None = None,
        mtls: bool = False,
    ) -> Credentials:
        given = [x is not None for x in (private_key_pem, private_key_file, client_secret)]
        if sum(given) == 0 and mtls:
            return cls(client_id, token_url, mtls=True)
        if sum(given) != 1:
            raise ValueError(
                "give exactly one of private_key_pem, private_key_file or client_secret, "
                "or a client certificate"
            )
        if private_key_file is not None:
            private_key_pem = Path(private_key_file).read_bytes()
        key = load_private_pem(private_key_pem) if private_key_pem is not None else None
        return cls(client_id, token_url, key, client_secret)

    def client_assertion(self, now: float | None = None) -> str:
        """A fresh signed JWT (RFC 7523) proving possession of the client's key."""
        if self.key is None:
            raise ValueError("these credentials have no private key")
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_url,
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME,
            "jti": str(uuid.uuid4()),
        }
        alg = "EdDSA" if isinstance(self.key, ed25519.Ed25519PrivateKey) else "ES256"
        kid = public_jwk(self.key)["kid"]
        return jwt.encode(claims, self.key, algorithm=alg, headers={"kid": kid, "typ": "JWT"})

    def token_form(self) -> dict[str, str]:
        """The form fields of one token request."""
        form = {"grant_type": "client_credentials"}
        if self.key is not None:
            form["client_assertion_type"] = ASSERTION_TYPE
            form["client_assertion"] = self.client_assertion()
        elif self.mtls and self.secret is None:
            form["client_id"] = self.client_id
        else:
            form["client_id"] = self.client_id
            form["client_secret"] = self.secret or ""
        return form


def parse_token_response(status: int, body: Any) -> tuple[str, float]:
    """(access token, lifetime in seconds) of a token endpoint answer; raises TokenError."""
    data: dict[str, Any] = body if isinstance(body, dict) else {}
    token = data.get("access_token")
    if status != 200 or not isinstance(token, str) or not token:
        raise TokenError(
            status,
            str(data.get("error", "invalid_response")),
            str(data.get("error_description", "the token endpoint gave no access token")),
            data,
        )
    expires_in = data.get("expires_in", 60)
    lifetime = float(expires_in) if isinstance(expires_in, int | float) else 60.0
    return token, lifetime


class TokenCache:
    """The current access token; thread-safe, with a monotonic expiry."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    def current(self) -> str | None:
        """The token when more than REFRESH_MARGIN seconds of it remain, else None."""
        with self._lock:
            if self._token is not None and self._expires_at - time.monotonic() > REFRESH_MARGIN:
                return self._token
            return None

    def store(self, token: str, lifetime: float) -> None:
        with self._lock:
            self._token = token
            self._expires_at = time.monotonic() + lifetime

    def invalidate(self, token: str | None = None) -> None:
        """Forget the token (only if it is still ``token``, when given)."""
        with self._lock:
            if token is None or token == self._token:
                self._token = None
                self._expires_at = 0.0
