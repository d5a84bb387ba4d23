"""The message log's record format and hash chain (protocol §6).

``hash`` = SHA-256( prev_hash as 32 raw bytes || JCS(record without prev_hash and hash) ).
Records hold only strings, integers and nulls, for which RFC 8785 canonical
JSON is exactly ``json.dumps`` with sorted keys, no spaces and raw UTF-8.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

GENESIS = "0" * 64

# Every field of a record, in the order of the table's columns.
FIELDS = (
    "seq",
    "ts",
    "request_id",
    "client",
    "service",
    "method",
    "path",
    "query_hash",
    "purpose",
    "subject_ref",
    "user",
    "status",
    "outcome",
    "request_hash",
    "response_hash",
    "request_bytes",
    "response_bytes",
    "duration_us",
    "prev_hash",
    "hash",
)
HASHED_FIELDS = tuple(f for f in FIELDS if f not in ("prev_hash", "hash"))


def canonical(obj: dict[str, Any]) -> bytes:
    """RFC 8785 canonical JSON for objects of strings, integers, booleans and nulls."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(prev_hash: str, record: dict[str, Any]) -> str:
    body = {f: record.get(f) for f in HASHED_FIELDS}
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical(body)).hexdigest()


def seal_payload(seq: int, hash_: str, ts: str) -> bytes:
    """What a seal signs: the canonical JSON of ``{seq, hash, ts}``."""
    return canonical({"seq": seq, "hash": hash_, "ts": ts})
