"""Verification of ``GSB-Assertion``: the bus's signed statement about one forwarded call.

The assertion is a short-lived compact JWT (EdDSA) signed with a key the bus
publishes at ``/.well-known/jwks.json``; its claims bind the calling client
(``sub``), the service (``aud``), the request id (``rid``), the purpose and
whether a subject was given. Only EdDSA is accepted: ``none`` and every other
algorithm are refused before any key is looked up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519

from dargah.client.jwks import JwksCache

Audiences = Callable[[str], bool] | set[str] | frozenset[str] | None


class InvalidAssertion(Exception):
    """A missing or invalid ``GSB-Assertion``; ``reason`` says why, in English."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AssertionClaims:
    """What the bus vouches for about one forwarded call."""

    client: str
    service: str
    request_id: str
    purpose: str | None
    subject_present: bool
    expires_at: datetime


class AssertionVerifier:
    """Verifies ``GSB-Assertion`` JWTs against the bus's published keys.

    ``audiences`` says which ``aud`` values (bus service ids, or the
    subscriber's client id for event deliveries) this provider accepts: a set,
    a predicate, or None for any. ``issuer``, when given, must equal ``iss``.
    """

    def __init__(
        self,
        jwks_url: str,
        *,
        audiences: Audiences = None,
        leeway: int = 5,
        issuer: str | None = None,
        min_refetch_interval: float = 30.0,
        max_age: float = 300.0,
    ) -> None:
        self.jwks = JwksCache(jwks_url, min_refetch_interval=min_refetch_interval, max_age=max_age)
        self._audiences = audiences
        self.leeway = leeway
        self.issuer = issuer

    def close(self) -> None:
        self.jwks.close()

    def verify(
        self,
        token: str | None,
        *,
        client: str | None = None,
        request_id: str | None = None,
        service: str | None = None,
    ) -> AssertionClaims:
        """The claims of a valid assertion (blocking: may fetch the JWKS); else InvalidAssertion.

        ``client``, ``request_id`` and ``service``, when given (the
        ``GSB-Client``, ``GSB-Request-Id`` and ``GSB-Service`` headers), must
        match the claims ``sub``, ``rid`` and ``aud``.
        """
        kid = _kid_of(token)
        key = self.jwks.get(kid)
        return self._check(token or "", key, client, request_id, service)

    async def averify(
        self,
        token: str | None,
        *,
        client: str | None = None,
        request_id: str | None = None,
        service: str | None = None,
    ) -> AssertionClaims:
        """:meth:`verify` for async code; never blocks the event loop."""
        kid = _kid_of(token)
        key = await self.jwks.aget(kid)
        return self._check(token or "", key, client, request_id, service)

    def _check(
        self,
        token: str,
        key: ed25519.Ed25519PublicKey | None,
        client: str | None,
        request_id: str | None,
        service: str | None,
    ) -> AssertionClaims:
        if key is None:
            raise InvalidAssertion("the assertion is signed with a key the bus does not publish")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["EdDSA"],
                leeway=self.leeway,
                options={
                    "require": ["exp", "iat", "sub", "aud", "rid"],
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidAssertion("the assertion has expired") from exc
        except jwt.InvalidSignatureError as exc:
            raise InvalidAssertion("the assertion's signature is not valid") from exc
        except jwt.PyJWTError as exc:
            raise InvalidAssertion(f"the assertion is not valid: {exc}") from exc
        return self._claims(claims, client, request_id, service)

    def _claims(
        self,
        claims: dict[str, Any],
        client: str | None,
        request_id: str | None,
        service: str | None,
    ) -> AssertionClaims:
        sub, aud, rid = claims.get("sub"), claims.get("aud"), claims.get("rid")
        purpose, subject_present = claims.get("purpose"), claims.get("subject_present", False)
        if not (isinstance(sub, str) and isinstance(aud, str) and isinstance(rid, str)):
            raise InvalidAssertion("the assertion's sub, aud and rid must be strings")
        if purpose is not None and not isinstance(purpose, str):
            raise InvalidAssertion("the assertion's purpose must be a string or null")
        if not isinstance(subject_present, bool):
            raise InvalidAssertion("the assertion's subject_present must be a boolean")
        if self.issuer is not None and claims.get("iss") != self.issuer:
            raise InvalidAssertion("the assertion was issued by another bus")
        if not self._accepts(aud):
            raise InvalidAssertion(f"the assertion is for {aud!r}, not for this provider")
        if client is not None and client != sub:
            raise InvalidAssertion("GSB-Client does not match the assertion's sub")
        if request_id is not None and request_id != rid:
            raise InvalidAssertion("GSB-Request-Id does not match the assertion's rid")
        if service is not None and service != aud:
            raise InvalidAssertion("GSB-Service does not match the assertion's aud")
        return AssertionClaims(
            client=sub,
            service=aud,
            request_id=rid,
            purpose=purpose,
            subject_present=subject_present,
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
        )

    def _accepts(self, aud: str) -> bool:
        if self._audiences is None:
            return True
        if callable(self._audiences):
            return bool(self._audiences(aud))
        return aud in self._audiences


def _kid_of(token: str | None) -> str:
    if not token:
        raise InvalidAssertion("the call carries no GSB-Assertion header")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidAssertion(f"the assertion is not a JWT: {exc}") from exc
    if header.get("alg") != "EdDSA":
        raise InvalidAssertion(f"the assertion's algorithm {header.get('alg')!r} is not EdDSA")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidAssertion("the assertion's header has no kid")
    return kid


def gsb_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The GSB headers the verifier checks, by lower-case name (first value wins)."""
    wanted = ("gsb-assertion", "gsb-client", "gsb-request-id", "gsb-service", "gsb-delivery-id")
    found: dict[str, str] = {}
    for name, value in headers.items():
        low = name.lower()
        if low in wanted and low not in found:
            found[low] = value
    return found


def verify_request_headers(
    verifier: AssertionVerifier, headers: Mapping[str, str]
) -> AssertionClaims:
    """Verify the GSB headers of one request (any framework; blocking).

    An event delivery (it carries ``GSB-Delivery-Id``) is bound differently: ``rid``
    is the delivery id and ``aud`` the subscriber, while ``GSB-Service`` names the topic.
    """
    h = gsb_headers(headers)
    return verifier.verify(**delivery_or_call(h))


def delivery_or_call(h: Mapping[str, str]) -> dict[str, str | None]:
    """The verifier's arguments for a call or for an event delivery."""
    if "gsb-delivery-id" in h:
        return {
            "token": h.get("gsb-assertion"),
            "client": h.get("gsb-client"),
            "request_id": h.get("gsb-delivery-id"),
            "service": None,
        }
    return {
        "token": h.get("gsb-assertion"),
        "client": h.get("gsb-client"),
        "request_id": h.get("gsb-request-id"),
        "service": h.get("gsb-service"),
    }
