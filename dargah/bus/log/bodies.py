"""Stored bodies of services that opt in: AES-256-GCM at rest (protocol §6).

The bus encrypts each exchange's request and response under the instance's
``body`` key with two 96-bit nonces (stored together, 24 bytes) and the request
id as associated data; ``message_log_body`` keeps them by chain and seq, and archiving
moves them, still encrypted, into the archive file. Decrypting them reveals
personal data: callers must be entitled to it and record that they did.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, text

from dargah.core.keys import b64url_decode


@dataclass(frozen=True)
class StoredBody:
    seq: int
    kid: str
    nonce: bytes
    request: bytes | None
    response: bytes | None

    @classmethod
    def from_archive(cls, line: dict[str, Any]) -> StoredBody:
        """From an archive file's ``{"body": ...}`` line."""

        def raw(name: str) -> bytes | None:
            value = line[name]
            return None if value is None else b64url_decode(str(value))

        return cls(
            int(line["seq"]),
            str(line["kid"]),
            raw("nonce") or b"",
            raw("request_body"),
            raw("response_body"),
        )


def body_keys(conn: Connection) -> dict[str, bytes]:
    """Every body key of the instance (retired ones too) by kid."""
    rows = conn.execute(text("SELECT kid, private_pem FROM bus_keys WHERE use = 'body'"))
    return {str(kid): bytes.fromhex(secret) for kid, secret in rows}


def stored_body(conn: Connection, seq: int, chain: str = "") -> StoredBody | None:
    """The encrypted bodies of a live record (``seq`` of ``chain``), if they were stored."""
    row = conn.execute(
        text(
            "SELECT seq, kid, nonce, request_body, response_body FROM message_log_body"
            " WHERE chain = :chain AND seq = :seq"
        ),
        {"chain": chain, "seq": seq},
    ).first()
    if row is None:
        return None
    return StoredBody(
        int(row[0]),
        str(row[1]),
        bytes(row[2]),
        None if row[3] is None else bytes(row[3]),
        None if row[4] is None else bytes(row[4]),
    )


def decrypt(
    body: StoredBody, keys: dict[str, bytes], request_id: str
) -> tuple[bytes | None, bytes | None]:
    """(request, response) in clear; raises ``cryptography.exceptions.InvalidTag`` when they
    were altered or belong to another request, KeyError for an unknown key."""
    aes = AESGCM(keys[body.kid])
    aad = request_id.encode()
    n1, n2 = body.nonce[:12], body.nonce[12:24]
    request = None if body.request is None else aes.decrypt(n1, body.request, aad)
    response = None if body.response is None else aes.decrypt(n2, body.response, aad)
    return request, response


def matches_record(record: dict[str, Any], response: bytes | None) -> bool:
    """Whether a decrypted response is the one the record's hash was taken of."""
    return response is not None and hashlib.sha256(response).hexdigest() == record.get(
        "response_hash"
    )
