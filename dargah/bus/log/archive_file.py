"""The archive file format: gzipped JSON Lines that verify on their own (protocol §6).

1. A header: ``format``, ``version``, ``chain`` (for a named chain), ``instance``,
   ``first_seq``, ``last_seq``,
   ``prev_hash`` (of the first record), ``last_hash``, the counts of ``records``,
   ``seals`` and ``bodies``, ``created_at``, and ``kid`` and ``signature``: the bus's
   seal key signs the canonical JSON of the rest of the header, so that no record
   can be cut from either end of the file unnoticed.
2. ``{"jwk": {...}}``: the public key of every seal in the file and of the header.
3. The records of the chain, every field (``chain`` from version 2 on), in seq
   order; each is followed by its seals
   (``{"seal": {seq, hash, ts, kid, signature}}``); the last record is sealed.
4. ``{"body": {seq, kid, nonce, request_body, response_body}}``: stored bodies,
   still encrypted, base64url.

Keys and seals come no later than the records they prove, so a file of any size
is verified in one pass with little memory.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature

from dargah.bus.log.chain import FIELDS, canonical
from dargah.bus.log.verify import (
    CHUNK,
    ChainCheck,
    ProgressFn,
    Seal,
    SealKeys,
    VerifyReport,
    seal_keys_from_jwks,
)
from dargah.core.keys import EdDSASigner, b64url_decode

FORMAT, VERSION = "dargah-log-archive", 2
VERSIONS = (1, 2)  # version 1: before there were several chains, records without ``chain``
_FIELD_SET = frozenset(FIELDS)
_V1_FIELD_SET = _FIELD_SET - {"chain"}


def encode_line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def signed_header(signer: EdDSASigner, **fields: Any) -> dict[str, Any]:
    header: dict[str, Any] = {"format": FORMAT, "version": VERSION, **fields, "kid": signer.kid}
    header["signature"] = signer.sign_bytes(canonical(header))
    return header


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_bodies(path: Path) -> list[dict[str, Any]]:
    """The stored bodies of an archive file, still encrypted (base64url fields)."""
    with gzip.open(path, "rb") as f:
        return [obj["body"] for obj in map(json.loads, f) if len(obj) == 1 and "body" in obj]


def verify_archive_file(
    path: Path, *, trusted_keys: SealKeys | None = None, progress: ProgressFn | None = None
) -> VerifyReport:
    """Verify an archive file on its own: header signature, chain, seals, counts.

    The file's own keys are used unless ``trusted_keys`` (the bus's seal keys by kid)
    are given; then every key in the file must be one of them.
    """
    report = VerifyReport()
    try:
        with gzip.open(path, "rb") as f:
            _ArchiveReader(report, trusted_keys, progress).read(f)
    except (OSError, EOFError, zlib.error) as exc:
        report.fail(None, f"the file cannot be read: {exc}")
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        report.fail(
            report.last_seq + 1 if report.last_seq else None, f"malformed archive line: {exc!r}"
        )
    return report


class _ArchiveReader:
    def __init__(
        self, report: VerifyReport, trusted: SealKeys | None, progress: ProgressFn | None
    ) -> None:
        self.report = report
        self.trusted = trusted
        self.progress = progress
        self.header: dict[str, Any] = {}
        self.jwks: list[dict[str, Any]] = []
        self.check: ChainCheck | None = None
        self.seals = self.bodies = 0
        self.fields = _FIELD_SET

    def read(self, lines: Iterable[bytes]) -> None:
        rep = self.report
        it = iter(lines)
        if not self._read_header(next(it, b"")):
            return
        batch: list[tuple[Any, ...]] = []
        pending: list[Seal] = []
        for line in it:
            obj = json.loads(line)
            kind = next(iter(obj)) if len(obj) == 1 else "record"
            if kind == "jwk":
                if self.check is not None:
                    raise ValueError("a key after the records began")
                self.jwks.append(obj["jwk"])
                continue
            if self.check is None and self._start() is None:
                return
            if kind == "record":
                if obj.keys() != self.fields or obj.get("chain", "") != rep.chain:
                    rep.fail(obj.get("seq"), "a record with fields other than the chain's")
                    return
                if len(batch) >= CHUNK and not self._flush(batch, pending):
                    return
                batch.append(tuple(obj.get(f, "") for f in FIELDS))
            elif kind == "seal":
                pending.append(Seal(**obj["seal"]))
                self.seals += 1
            elif kind == "body":
                self._body(obj["body"])
            else:
                raise ValueError(f"unknown line {kind!r}")
        if self.check is None and self._start() is None:
            return
        if self._flush(batch, pending):
            self._finish()

    def _read_header(self, line: bytes) -> bool:
        h = json.loads(line) if line else {}
        if not isinstance(h, dict) or h.get("format") != FORMAT or h.get("version") not in VERSIONS:
            self.report.fail(None, f"not a {FORMAT} file of version 1 or 2")
            return False
        self.fields = _FIELD_SET if h["version"] >= 2 else _V1_FIELD_SET
        chain = h.get("chain", "")
        if not isinstance(chain, str):
            self.report.fail(None, "the header's chain is not a text")
            return False
        self.report.chain = chain
        for name in ("first_seq", "last_seq", "records", "seals", "bodies"):
            if not isinstance(h.get(name), int):
                self.report.fail(None, f"the header's {name} is not an integer")
                return False
        if h["records"] != h["last_seq"] - h["first_seq"] + 1 or h["first_seq"] < 1:
            self.report.fail(None, "the header's seq range and record count disagree")
            return False
        self.header = h
        return True

    def _start(self) -> ChainCheck | None:
        """After the keys: pick the keys to trust and check the header's signature."""
        rep, h = self.report, self.header
        keys = seal_keys_from_jwks(self.jwks)
        if self.trusted is not None:
            for kid, embedded in keys.items():
                known = self.trusted.get(kid)
                if known is None or known.public_bytes_raw() != embedded.public_bytes_raw():
                    rep.fail(
                        h["first_seq"], f"key {kid!r} in the file is not one of the bus's seal keys"
                    )
                    return None
            keys = dict(self.trusted)
        signed = {k: v for k, v in h.items() if k != "signature"}
        header_key = keys.get(str(h.get("kid")))
        try:
            if header_key is None:
                raise InvalidSignature
            header_key.verify(b64url_decode(str(h.get("signature"))), canonical(signed))
        except (InvalidSignature, ValueError):
            rep.fail(h["first_seq"], "the header's signature does not verify")
            return None
        self.check = ChainCheck(rep, h["first_seq"], str(h["prev_hash"]), keys)
        return self.check

    def _flush(self, batch: list[tuple[Any, ...]], pending: list[Seal]) -> bool:
        if self.check is None:
            return False
        self.check.add_seals(pending)
        pending.clear()
        ok = self.check.feed(batch)
        batch.clear()
        if self.progress is not None:
            self.progress(self.report.records, self.header["records"])
        return ok

    def _body(self, body: dict[str, Any]) -> None:
        seq = body["seq"]
        if (
            not isinstance(seq, int)
            or not self.header["first_seq"] <= seq <= self.header["last_seq"]
        ):
            raise ValueError(f"a body for seq {seq!r}, outside the archive")
        for name in ("nonce", "request_body", "response_body"):
            if body[name] is not None:
                b64url_decode(body[name])
        self.bodies += 1

    def _finish(self) -> None:
        rep, h = self.report, self.header
        if self.check is not None:
            self.check.finish()
        rep.warnings.clear()
        if not rep.ok:
            return
        if rep.last_seq != h["last_seq"]:
            rep.fail(
                (rep.last_seq or h["first_seq"] - 1) + 1,
                f"the file ends at seq {rep.last_seq} but its header says {h['last_seq']}",
            )
        elif rep.end_hash != h["last_hash"]:
            rep.fail(rep.last_seq, "the last record's hash is not the header's last_hash")
        elif rep.last_sealed_seq != h["last_seq"]:
            rep.fail(rep.last_seq, "the archive's last record is not sealed")
        elif (self.seals, self.bodies) != (h["seals"], h["bodies"]):
            rep.fail(
                rep.last_seq,
                f"the file holds {self.seals} seals and {self.bodies} bodies, "
                f"its header says {h['seals']} and {h['bodies']}",
            )


def chain_archives(reports: Sequence[tuple[Path, VerifyReport]]) -> list[str]:
    """Where intact archive files of a chain, taken in seq order, do not continue one another."""
    gaps = []
    done = sorted(
        (r for r in reports if r[1].ok and r[1].first_seq is not None),
        key=lambda r: (r[1].chain, r[1].first_seq or 0),
    )
    for (p1, r1), (p2, r2) in itertools.pairwise(done):
        if r1.chain != r2.chain:
            continue
        if r2.first_seq != (r1.last_seq or 0) + 1 or r2.start_hash != r1.end_hash:
            gaps.append(f"{p2.name} does not continue {p1.name}")
    return gaps
