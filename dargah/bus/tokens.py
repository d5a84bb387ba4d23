"""OAuth 2.0 client credentials (protocol §2): issuing access tokens and checking them.

Client assertions (RFC 7523, private_key_jwt) are verified with the key the
subsystem registered, with the algorithm that key fixes. Over mutual TLS
(RFC 8705) a subsystem may instead authenticate with a client certificate it
registered (``tls_client_auth``/``self_signed_tls_client_auth``: ``client_id``
alone in the form), and whenever the connection presents a certificate
registered to the client, the token is bound to it (``cnf.x5t#S256``): the
bus then accepts it only on connections that present that certificate. Access tokens are
HS256 JWTs under a key all bus processes of the instance share; every check
also asks the current registry snapshot whether the client, its member and
the key behind the token are still active, so a revocation reaches tokens
already issued.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from dargah.core.keys import HS256
from dargah.registry.instance import check_secret
from dargah.registry.snapshot import Snapshot

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME = 300
LEEWAY = 5
_CACHE_MAX = 50_000


class OAuthError(Exception):
    """An RFC 6749 §5.2 error."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True, slots=True)
class TokenClaims:
    client: str
    kid: str
    exp: int
    cnf: str | None = None  # x5t#S256 of the certificate the token is bound to


CERT_KID = "x5t:"  # the kid of a token obtained with a client certificate alone


def _secret_fingerprint(secret_hash: str | None) -> str:
    return "secret:" + (secret_hash or "")[-12:]


class TokenIssuer:
    """The token endpoint's rules. ``remember_jti`` returns False for a jti seen before."""

    def __init__(
        self,
        signer: HS256,
        token_url: str,
        ttl: int,
        sandbox: bool,
        remember_jti: Callable[[str, str, int], bool],
    ) -> None:
        self._signer = signer
        self.token_url = token_url
        self._ttl = max(60, min(600, ttl))
        self._sandbox = sandbox
        self._remember_jti = remember_jti

    def issue(
        self,
        form: dict[str, str],
        basic: tuple[str, str] | None,
        snap: Snapshot,
        cert: str | None = None,
    ) -> dict[str, Any]:
        """A token for the client the request authenticates; ``cert`` is the thumbprint of
        the client certificate the connection presented, if any."""
        if form.get("grant_type") != "client_credentials":
            raise OAuthError("unsupported_grant_type", "grant_type must be client_credentials")
        if "client_assertion" in form:
            client, kid = self._by_assertion(form, snap)
        elif "client_secret" in form or basic is not None:
            client, kid = self._by_secret(form, basic, snap)
        elif form.get("client_id"):
            client, kid = self._by_certificate(form["client_id"], cert, snap)
        else:
            raise OAuthError("invalid_client", "no client authentication given", 401)
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": client,
            "kid": kid,
            "iat": now,
            "exp": now + self._ttl,
            "jti": uuid.uuid4().hex,
        }
        registered = snap.certs.get(cert) if cert is not None else None
        if registered is not None and registered.active and registered.client == client:
            claims["cnf"] = {"x5t#S256": cert}
        return {
            "access_token": self._signer.sign(claims),
            "token_type": "Bearer",
            "expires_in": self._ttl,
        }

    def _by_assertion(self, form: dict[str, str], snap: Snapshot) -> tuple[str, str]:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise OAuthError("invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
        assertion = form["client_assertion"]
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise OAuthError("invalid_client", f"malformed client assertion: {exc}", 401) from exc
        client = unverified.get("iss")
        if not isinstance(client, str) or unverified.get("sub") != client:
            raise OAuthError("invalid_client", "iss and sub must both be the client id", 401)
        if form.get("client_id") not in (None, client):
            raise OAuthError("invalid_client", "client_id does not match the assertion", 401)
        entry = snap.clients.get(client)
        if entry is None or not entry.active:
            raise OAuthError("invalid_client", "unknown or revoked client", 401)
        kid = header.get("kid")
        candidates = [
            k
            for k in snap.keys.values()
            if k.client == client and k.active and (kid is None or k.kid == kid)
        ]
        if not candidates:
            raise OAuthError(
                "invalid_client", "no active registered key matches the assertion", 401
            )
        for key in candidates:
            try:
                claims = jwt.decode(
                    assertion,
                    key=key.public_key,
                    algorithms=[key.alg],
                    audience=self.token_url,
                    issuer=client,
                    leeway=LEEWAY,
                    options={"require": ["exp", "iat", "jti", "sub", "iss", "aud"]},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                raise OAuthError("invalid_client", f"client assertion refused: {exc}", 401) from exc
            break
        else:
            raise OAuthError("invalid_client", "client assertion signature does not verify", 401)
        exp, iat = claims["exp"], claims["iat"]
        if (
            not isinstance(exp, int)
            or not isinstance(iat, int)
            or exp - iat > MAX_ASSERTION_LIFETIME
        ):
            raise OAuthError("invalid_client", "exp must be at most 300 s after iat", 401)
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti or len(jti) > 255:
            raise OAuthError("invalid_client", "jti must be a non-empty string", 401)
        seen_key = f"{client}:{jti}"
        if len(seen_key) > 255:  # the used_jti column's size: a digest keeps a long jti unique
            seen_key = f"{client}:sha256:{hashlib.sha256(jti.encode()).hexdigest()}"
        if not self._remember_jti(seen_key, client, exp):
            raise OAuthError("invalid_client", "client assertion replayed (jti already used)", 401)
        return client, key.kid

    def _by_certificate(self, client: str, cert: str | None, snap: Snapshot) -> tuple[str, str]:
        if cert is None:
            raise OAuthError(
                "invalid_client",
                "no client authentication given (no assertion, secret or client certificate)",
                401,
            )
        entry = snap.clients.get(client)
        registered = snap.certs.get(cert)
        if (
            entry is None
            or not entry.active
            or registered is None
            or not registered.active
            or registered.client != client
        ):
            raise OAuthError(
                "invalid_client", "the client certificate is not one this client registered", 401
            )
        return client, CERT_KID + cert

    def _by_secret(
        self, form: dict[str, str], basic: tuple[str, str] | None, snap: Snapshot
    ) -> tuple[str, str]:
        if not self._sandbox:
            raise OAuthError(
                "invalid_client",
                "client secrets are refused on production instances; use a key",
                401,
            )
        client, secret = (
            basic if basic is not None else (form.get("client_id", ""), form["client_secret"])
        )
        entry = snap.clients.get(client)
        if entry is None or not entry.active or not check_secret(secret, entry.secret_hash):
            raise OAuthError("invalid_client", "unknown client or wrong secret", 401)
        return client, _secret_fingerprint(entry.secret_hash)


class TokenVerifier:
    """Checks a bearer token on every call; the MAC check is cached, the revocation check is not."""

    def __init__(self, signer: HS256) -> None:
        self._signer = signer
        self._cache: dict[str, TokenClaims] = {}

    def verify(self, token: str, snap: Snapshot, now: float) -> TokenClaims | None:
        claims = self._cache.get(token)
        if claims is None:
            raw = self._signer.verify(token)
            if raw is None:
                return None
            sub, kid, exp = raw.get("sub"), raw.get("kid"), raw.get("exp")
            if not isinstance(sub, str) or not isinstance(kid, str) or not isinstance(exp, int):
                return None
            cnf = raw.get("cnf")
            bound = cnf.get("x5t#S256") if isinstance(cnf, dict) else None
            if cnf is not None and not isinstance(bound, str):
                return None
            claims = TokenClaims(sub, kid, exp, bound)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[token] = claims
        if claims.exp <= now:
            self._cache.pop(token, None)
            return None
        client = snap.clients.get(claims.client)
        if client is None or not client.active:
            return None
        if claims.cnf is not None:  # the certificate must still be registered and active
            cert = snap.certs.get(claims.cnf)
            if cert is None or not cert.active or cert.client != claims.client:
                return None
        if claims.kid.startswith("secret:"):
            if claims.kid != _secret_fingerprint(client.secret_hash):
                return None
        elif claims.kid.startswith(CERT_KID):
            if claims.cnf is None:
                return None
        else:
            key = snap.keys.get(claims.kid)
            if key is None or not key.active or key.client != claims.client:
                return None
        return claims
