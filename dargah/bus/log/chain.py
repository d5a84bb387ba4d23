"""The message log's record format and hash chain (protocol §6).

``hash`` = SHA-256( prev_hash as 32 raw bytes || JCS(record without prev_hash and hash) ).
Records hold only strings, integers and nulls, for which RFC 8785 canonical
JSON is exactly ``json.dumps`` with sorted keys, no spaces and raw UTF-8.

An instance may keep several chains, one per writer (protocol §6, "Several
chains"): a record of a named chain carries ``chain`` in its hash; the records
of the single unnamed chain (``chain`` empty, as every record was before there
were several) leave it out, so that they hash as they always did.
"""

from __future__ import annotations

import hashlib
import json
from json.encoder import encode_basestring
from typing import Any

GENESIS = "0" * 64

# Every field of a record, in the order of the table's columns.
FIELDS = (
    "chain",
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


_SORTED = tuple(sorted(HASHED_FIELDS))
_KEYS = tuple(f'"{f}":' for f in _SORTED)
# The canonical JSON around ``seq``: the fields before it and after it in sorted order.
_SEQ_AT = _SORTED.index("seq")
# ``chain`` sorts first; it is written by :func:`_open`, only for a named chain.
assert _SORTED[0] == "chain"
_HEAD = tuple(zip(_KEYS[1:_SEQ_AT], _SORTED[1:_SEQ_AT], strict=True))
_TAIL = tuple(zip(_KEYS[_SEQ_AT + 1 :], _SORTED[_SEQ_AT + 1 :], strict=True))


def _scalar(v: Any) -> str:
    if v is True or v is False:
        return "true" if v else "false"
    if isinstance(v, int):
        return int.__repr__(v)
    if isinstance(v, str):
        return encode_basestring(v)
    return canonical_value(v)  # anything else: the general canonical form


def _members(record: dict[str, Any], pairs: tuple[tuple[str, str], ...]) -> str:
    # Exact types first: nearly every value is a str, None or an int (not a bool).
    get = record.get
    parts = []
    for key, field in pairs:
        v = get(field)
        if type(v) is str:
            parts.append(key + encode_basestring(v))
        elif v is None:
            parts.append(key + "null")
        elif type(v) is int:
            parts.append(key + int.__repr__(v))
        else:
            parts.append(key + _scalar(v))
    return ",".join(parts)


def _open(record: dict[str, Any]) -> str:
    """The start of a record's canonical JSON: ``{`` and its named chain, if any (the unnamed
    chain's records leave ``chain`` out, so that they hash as before there were chains)."""
    chain = record.get("chain")
    if not chain:
        return "{"
    value = encode_basestring(chain) if isinstance(chain, str) else canonical_value(chain)
    return '{"chain":' + value + ","


def hash_parts(record: dict[str, Any]) -> tuple[bytes, bytes]:
    """The record's canonical JSON without its ``seq`` value: (the part before, the part after).

    Everything but ``seq`` and ``prev_hash`` is known before the record is chained, so the
    writer builds this before it takes the log's lock; under the lock only :func:`chain_hash`
    is left to do.
    """
    head = _open(record) + _members(record, _HEAD) + ',"seq":'
    tail = "," + _members(record, _TAIL) + "}"
    return head.encode(), tail.encode()


def chain_hash(prev_hash: str, seq: int, parts: tuple[bytes, bytes]) -> str:
    """The chain hash of a record with ``seq`` whose :func:`hash_parts` are ``parts``."""
    return chain_digest(bytes.fromhex(prev_hash), seq, parts).hex()


def chain_digest(prev: bytes, seq: int, parts: tuple[bytes, bytes]) -> bytes:
    """:func:`chain_hash` on raw digests: a batch chains each record's digest into the next
    without going through hex."""
    return hashlib.sha256(b"%b%b%d%b" % (prev, parts[0], seq, parts[1])).digest()


def record_hash(prev_hash: str, record: dict[str, Any]) -> str:
    """The record's chain hash; the JSON is built field by field (the same bytes as
    :func:`canonical` for a record's strings, integers and nulls, in half the time)."""
    seq = record.get("seq")
    seq_json = "null" if seq is None else canonical_value(seq)
    data = (
        _open(record)
        + _members(record, _HEAD)
        + ',"seq":'
        + seq_json
        + ","
        + _members(record, _TAIL)
        + "}"
    )
    return hashlib.sha256(bytes.fromhex(prev_hash) + data.encode()).hexdigest()


def canonical_value(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def log_id(chain: str, seq: int) -> str:
    """A record's ``GSB-Log-Id``: ``{chain}:{seq}``, or the plain seq in the unnamed chain."""
    return f"{chain}:{seq}" if chain else str(seq)


def checkpoint_payload(ts: str, heads: list[dict[str, Any]]) -> bytes:
    """What an instance checkpoint signs: the canonical JSON of ``{ts, heads}``, the heads
    (``{chain, seq, hash}``) in chain order."""
    return canonical({"ts": ts, "heads": sorted(heads, key=lambda h: str(h["chain"]))})


def seal_payload(seq: int, hash_: str, ts: str) -> bytes:
    """What a seal signs: the canonical JSON of ``{seq, hash, ts}``."""
    return canonical({"seq": seq, "hash": hash_, "ts": ts})
