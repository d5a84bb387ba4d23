"""Keys and compact JWTs: Ed25519 and P-256 JWKs, PEM files, and fast signing helpers.

Verification of agencies' client assertions uses PyJWT with the algorithm
fixed by the registered key, so ``alg: none`` and algorithm confusion are
refused. The bus's own tokens are signed and checked here with plain code,
because they sit on the per-request path.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

import nacl.bindings
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from nacl._sodium import ffi as _ffi
from nacl._sodium import lib as _sodium

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def generate_ed25519() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def generate_p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_pem(data: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise ValueError("only Ed25519 and P-256 private keys are supported")


def public_jwk(key: PrivateKey | PublicKey) -> dict[str, str]:
    """The public JWK of a key, with ``kid`` set to its RFC 7638 thumbprint."""
    pub = (
        key.public_key()
        if isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey)
        else key
    )
    if isinstance(pub, ed25519.Ed25519PublicKey):
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
        alg = "EdDSA"
    else:
        nums = pub.public_numbers()
        jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(nums.x.to_bytes(32, "big")),
            "y": b64url(nums.y.to_bytes(32, "big")),
        }
        alg = "ES256"
    jwk["kid"] = jwk_thumbprint(jwk)
    jwk["alg"] = alg
    jwk["use"] = "sig"
    return jwk


def jwk_thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 thumbprint (SHA-256, base64url)."""
    if jwk.get("kty") == "OKP":
        members = {"crv": jwk["crv"], "kty": "OKP", "x": jwk["x"]}
    elif jwk.get("kty") == "EC":
        members = {"crv": jwk["crv"], "kty": "EC", "x": jwk["x"], "y": jwk["y"]}
    else:
        raise ValueError("unsupported key type")
    canon = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return b64url(hashlib.sha256(canon).digest())


def jwk_to_public_key(jwk: dict[str, Any]) -> tuple[PublicKey, str]:
    """(public key, JWS alg) of a JWK; raises ValueError for anything but Ed25519 or P-256."""
    kty = jwk.get("kty")
    try:
        if kty == "OKP" and jwk.get("crv") == "Ed25519":
            raw = b64url_decode(str(jwk["x"]))
            if len(raw) != 32:
                raise ValueError("Ed25519 key must be 32 bytes")
            return ed25519.Ed25519PublicKey.from_public_bytes(raw), "EdDSA"
        if kty == "EC" and jwk.get("crv") == "P-256":
            x = int.from_bytes(b64url_decode(str(jwk["x"])), "big")
            y = int.from_bytes(b64url_decode(str(jwk["y"])), "big")
            return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key(), "ES256"
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"invalid JWK: {exc}") from exc
    raise ValueError("only Ed25519 (OKP) and P-256 (EC) keys are accepted")


_COMPACT = json.JSONEncoder(separators=(",", ":"))
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64url_bytes(data: bytes) -> bytes:
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=")


def _json_b64(obj: dict[str, Any]) -> str:
    return _b64url_bytes(_COMPACT.encode(obj).encode()).decode("ascii")


class EdDSASigner:
    """Signs compact JWTs with an Ed25519 key; the header is encoded once.

    Signing calls libsodium's ``crypto_sign`` directly (PyNaCl's binding): measured here it
    is about a fifth faster than OpenSSL through ``cryptography``, releases the GIL while it
    works, and without PyNaCl's key and message objects it costs a few microseconds less
    per assertion (the bus signs one per call).
    """

    def __init__(self, key: ed25519.Ed25519PrivateKey, kid: str, typ: str = "JWT") -> None:
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        self._sk = nacl.bindings.crypto_sign_seed_keypair(seed)[1]
        self.kid = kid
        self._header = _json_b64({"alg": "EdDSA", "kid": kid, "typ": typ})
        self._prefix = (self._header + ".").encode("ascii")

    def _signature(self, data: bytes) -> bytes:
        signed = _ffi.new("unsigned char[]", len(data) + 64)  # signature || message
        if _sodium.crypto_sign(signed, _ffi.NULL, data, len(data), self._sk) != 0:
            raise RuntimeError("libsodium could not sign")
        signature: bytes = _ffi.buffer(signed, 64)[:]
        return signature

    def sign(self, claims: dict[str, Any]) -> str:
        signing_input = self._prefix + _b64url_bytes(_COMPACT.encode(claims).encode())
        return (signing_input + b"." + _b64url_bytes(self._signature(signing_input))).decode(
            "ascii"
        )

    def sign_json(self, payload: bytes) -> bytes:
        """A compact JWT over ``payload``, the claims already as JSON (for callers that build
        the JSON from cached pieces on a hot path)."""
        signing_input = self._prefix + _b64url_bytes(payload)
        return signing_input + b"." + _b64url_bytes(self._signature(signing_input))

    def sign_bytes(self, data: bytes) -> str:
        return _b64url_bytes(self._signature(data)).decode("ascii")


class HS256:
    """Compact JWTs with HMAC-SHA256 under a key shared by every bus process."""

    def __init__(self, secret: bytes, kid: str) -> None:
        self._secret = secret
        self.kid = kid
        self._header = _json_b64({"alg": "HS256", "kid": kid, "typ": "at+jwt"})

    def sign(self, claims: dict[str, Any]) -> str:
        signing_input = f"{self._header}.{_json_b64(claims)}"
        mac = hmac.new(self._secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64url(mac)}"

    def verify(self, token: str) -> dict[str, Any] | None:
        """The claims when the MAC is right, else None. Expiry is the caller's to check."""
        header, dot, rest = token.partition(".")
        if header != self._header or not dot:
            return None
        payload, dot, mac = rest.partition(".")
        if not dot or not payload or not mac:
            return None
        expected = hmac.new(self._secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(b64url_decode(mac), expected):
                return None
            claims = json.loads(b64url_decode(payload))
        except (ValueError, UnicodeDecodeError):
            return None
        return claims if isinstance(claims, dict) else None
