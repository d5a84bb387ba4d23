"""A record's chain hash is SHA-256 of the previous hash's 32 raw bytes and the record's RFC 8785
canonical JSON without prev_hash and hash (protocol §6): the writer's field-by-field JSON, its
batch chaining on raw digests and the verifier's record_hash all give exactly that."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from dargah.bus.log.backends import _chain, _prepare
from dargah.bus.log.chain import GENESIS, HASHED_FIELDS, canonical, record_hash
from tests.log_factory import make_record


def by_the_spec(prev: str, record: dict[str, Any]) -> str:
    fields = {f: record.get(f) for f in HASHED_FIELDS}
    if not fields["chain"]:  # the unnamed chain's records leave it out
        del fields["chain"]
    return hashlib.sha256(bytes.fromhex(prev) + canonical(fields)).hexdigest()


ODD: list[dict[str, Any]] = [
    {"user": 'quote " backslash \\ newline \n tab \t nul \x00 del \x7f'},
    {"purpose": "تأیید هویت", "path": "/\u2028/\ud7ff/😀"},
    {"status": 2**70, "duration_us": -1, "request_bytes": 0},
    {"client": True, "service": False},  # not what the bus writes, but JSON all the same
    {"method": 1.5, "query_hash": [1, "a"], "subject_ref": {"b": 1, "a": [None]}},
]


@pytest.mark.parametrize("chain", ["", "node-7"])
def test_batches_hash_every_record_as_the_protocol_defines(chain: str) -> None:
    records = [make_record(i) for i in range(12)] + [{**make_record(99), **o} for o in ODD]
    del records[3]["user"], records[5]["outcome"]  # a field never set is null
    records[0]["_traceparent"] = "not hashed"  # nor is anything else the record carries
    rows = _chain(records, _prepare(records, chain), 41, "ab" * 32)
    prev = "ab" * 32
    for seq, (rec, row) in enumerate(zip(records, rows, strict=True), start=42):
        assert rec["seq"] == seq and rec["prev_hash"] == prev and rec["chain"] == chain
        assert rec["hash"] == by_the_spec(prev, rec) == record_hash(prev, rec)
        assert row[0] == chain and row[1] == seq and row[-2:] == (prev, rec["hash"])
        prev = rec["hash"]


def test_the_first_record_chains_on_the_genesis_hash() -> None:
    records = [make_record(1)]
    _chain(records, _prepare(records, ""), 0, GENESIS)
    assert records[0]["seq"] == 1
    assert records[0]["hash"] == by_the_spec(GENESIS, records[0])
