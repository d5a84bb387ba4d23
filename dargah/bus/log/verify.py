"""Verifying the message log: recompute the hash chain and check every seal (protocol §6).

The live log is read in seq order, 10,000 records at a time, inside one read
snapshot, so that a concurrent writer or archiver cannot make it look broken.
Archive files (``archive_file.py``) go through the same :class:`ChainCheck`. The
check stops at the first bad record or seal: that is the lowest bad seq.

What is detected: a changed field (the hash no longer matches), a deleted
record (a gap), an inserted or reordered record (a gap or a broken chain), a
forged or altered seal (its signature), a seal whose hash is not its record's,
and a seal pointing at a record that does not exist (a truncated log). Records
after the last seal cannot be proven yet: that is a warning, not a failure.
"""

from __future__ import annotations

import contextlib
import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, Engine, text

from dargah.bus.log.chain import FIELDS, GENESIS, record_hash, seal_payload
from dargah.core.keys import b64url, b64url_decode, jwk_to_public_key
from dargah.store.db import READ_ONLY

CHUNK = 10_000
ProgressFn = Callable[[int, int], None]
SealKeys = Mapping[str, Ed25519PublicKey]

_PREV, _HASH = FIELDS.index("prev_hash"), FIELDS.index("hash")
_NO_SEAL = float("inf")
_MAX_SEQ = 2**62
_COLS = ", ".join(f'"{f}"' for f in FIELDS)
_RECORDS = text(f"SELECT {_COLS} FROM message_log WHERE seq > :after ORDER BY seq LIMIT {CHUNK}")
_SEALS = text(
    "SELECT seq, hash, ts, kid, signature FROM message_log_seal"
    " WHERE seq > :lo AND seq <= :hi ORDER BY seq, id"
)
_ARCHIVES = text(
    "SELECT first_seq, last_seq, last_hash FROM message_log_archive ORDER BY first_seq"
)
_SEAL_KEYS = text(
    "SELECT kid, public_jwk FROM bus_keys WHERE use = 'seal' AND public_jwk IS NOT NULL"
)


@dataclass
class VerifyReport:
    """The outcome of a verification: ok, or the first bad seq and why."""

    ok: bool = True
    records: int = 0
    seals: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    start_hash: str | None = None  # prev_hash of the first record
    end_hash: str | None = None  # hash of the last good record
    last_sealed_seq: int = 0
    first_bad_seq: int | None = None
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    kids: list[str] = field(default_factory=list)  # keys that signed the seals checked

    def fail(self, seq: int | None, reason: str) -> None:
        """Record a failure; the lowest seq wins."""
        if self.ok or (
            seq is not None and (self.first_bad_seq is None or seq < self.first_bad_seq)
        ):
            self.first_bad_seq, self.reason = seq, reason
        self.ok = False

    def summary(self) -> str:
        span = f" (seq {self.first_seq}..{self.last_seq})" if self.records else ""
        return (
            f"{self.records} records{span}, {self.seals} seals checked, "
            f"last sealed seq {self.last_sealed_seq}"
        )

    def failure_line(self) -> str:
        where = (
            f"at seq {self.first_bad_seq}"
            if self.first_bad_seq is not None
            else "before any record"
        )
        return f"FAILED {where}: {self.reason}"


@dataclass(frozen=True)
class Seal:
    seq: int
    hash: str
    ts: str
    kid: str
    signature: str


def seal_keys_from_jwks(jwks: Iterable[Mapping[str, Any]]) -> dict[str, Ed25519PublicKey]:
    """Ed25519 public keys by kid; other keys are not seal keys and are left out."""
    keys: dict[str, Ed25519PublicKey] = {}
    for jwk in jwks:
        try:
            key, _alg = jwk_to_public_key(dict(jwk))
        except ValueError:
            continue  # seals "signed" with it are reported as signed with an unknown key
        if isinstance(key, Ed25519PublicKey):
            keys[str(jwk["kid"])] = key
    return keys


def seal_keys(conn: Connection) -> dict[str, Ed25519PublicKey]:
    """The bus's seal keys (retired ones too) by kid, from ``bus_keys``."""
    jwks = []
    for kid, raw in conn.execute(_SEAL_KEYS):
        with contextlib.suppress(ValueError, TypeError):
            jwks.append({**json.loads(raw), "kid": kid})
    return seal_keys_from_jwks(jwks)


def seal_problem(seal: Seal, keys: SealKeys) -> str | None:
    """Why a seal's signature is not good, or None when it is."""
    key = keys.get(seal.kid)
    if key is None:
        return f"the seal at seq {seal.seq} is signed with an unknown key {seal.kid!r}"
    try:
        raw = b64url_decode(seal.signature)
        canonical = b64url(raw) == seal.signature
    except (ValueError, TypeError):
        canonical = False
    if not canonical:
        return f"the seal at seq {seal.seq} has a malformed signature"
    try:
        key.verify(raw, seal_payload(seal.seq, seal.hash, seal.ts))
    except (InvalidSignature, TypeError, ValueError):
        return f"the seal's signature at seq {seal.seq} does not verify"
    return None


class ChainCheck:
    """Checks records and seals in seq order, from a known start, until the first failure."""

    def __init__(
        self, report: VerifyReport, first_seq: int, prev_hash: str, keys: SealKeys
    ) -> None:
        self.report = report
        self.next_seq = first_seq
        self.prev_hash = prev_hash
        self._keys = keys
        self._seals: deque[Seal] = deque()
        self._kids: set[str] = set()
        report.start_hash = prev_hash

    def check_seal(self, seal: Seal, record_hash_: str | None) -> bool:
        """Check a seal's signature and, when the record's hash is known, that it is that hash."""
        rep = self.report
        problem = seal_problem(seal, self._keys)
        if problem is None and record_hash_ is not None and seal.hash != record_hash_:
            problem = f"the seal at seq {seal.seq} does not match the record's hash"
        if problem is not None:
            rep.fail(seal.seq, problem)
            return False
        rep.seals += 1
        rep.last_sealed_seq = max(rep.last_sealed_seq, seal.seq)
        if seal.kid not in self._kids:
            self._kids.add(seal.kid)
            rep.kids.append(seal.kid)
        return True

    def add_seals(self, seals: Iterable[Seal]) -> None:
        """Seals to check when their record comes; they must come in seq order."""
        self._seals.extend(seals)

    def feed(self, rows: Iterable[Sequence[Any]]) -> bool:
        """Check records (tuples in ``FIELDS`` order); False at the first failure."""
        rep = self.report
        if not rep.ok:
            return False
        expected, prev = self.next_seq, self.prev_hash
        seals = self._seals
        next_seal = seals[0].seq if seals else _NO_SEAL
        good = 0
        try:
            for row in rows:
                seq = row[0]
                if seq != expected:
                    self._misplaced(seq, expected)
                    return False
                if row[_PREV] != prev:
                    rep.fail(seq, f"prev_hash does not match {self._previous(seq)}")
                    return False
                try:
                    h = record_hash(prev, dict(zip(FIELDS, row, strict=True)))
                except (TypeError, ValueError):
                    rep.fail(seq, "the record holds a value that is not a string, integer or null")
                    return False
                if h != row[_HASH]:
                    rep.fail(seq, "hash does not match the record")
                    return False
                while next_seal <= seq:
                    seal = seals.popleft()
                    next_seal = seals[0].seq if seals else _NO_SEAL
                    if seal.seq != seq:
                        rep.fail(
                            seal.seq,
                            f"the seal at seq {seal.seq} points at a record that does not exist",
                        )
                        return False
                    if not self.check_seal(seal, h):
                        return False
                if rep.first_seq is None:
                    rep.first_seq = seq
                prev = h
                expected += 1
                good += 1
            return True
        finally:
            self.next_seq, self.prev_hash = expected, prev
            rep.records += good
            if good:
                rep.last_seq, rep.end_hash = expected - 1, prev

    def finish(self) -> VerifyReport:
        """Seals left over point past the last record; warn about an unsealed tail."""
        rep = self.report
        if rep.ok and self._seals:
            seal = self._seals[0]
            rep.fail(seal.seq, f"the seal at seq {seal.seq} points at a record that does not exist")
        if rep.ok and rep.last_seq is not None and rep.last_seq > rep.last_sealed_seq:
            first_unsealed = max(rep.last_sealed_seq + 1, rep.first_seq or 1)
            rep.warnings.append(
                f"records {first_unsealed}..{rep.last_seq} are not sealed yet "
                f"({rep.last_seq - first_unsealed + 1} after the last seal;"
                " the bus seals them at its next start)"
            )
        return rep

    def _previous(self, seq: int) -> str:
        if self.report.first_seq is None:
            return (
                "the genesis hash"
                if self.prev_hash == GENESIS
                else "the last archived record's hash"
            )
        return f"the hash of record {seq - 1}"

    def _misplaced(self, seq: Any, expected: int) -> None:
        if isinstance(seq, int) and seq > expected:
            self.report.fail(expected, f"record {expected} is missing (the next record is {seq})")
        elif isinstance(seq, int):
            self.report.fail(seq, f"record {seq} is out of place (expected seq {expected})")
        else:
            self.report.fail(
                expected, f"the record after seq {expected - 1} has an invalid seq {seq!r}"
            )


def read_seals(conn: Connection, lo: int, hi: int) -> list[Seal]:
    """Seals with lo < seq <= hi, in seq order."""
    return [Seal(*row) for row in conn.execute(_SEALS, {"lo": lo, "hi": hi})]


def archive_start(conn: Connection, report: VerifyReport) -> tuple[int, str, dict[int, str]]:
    """(last archived seq, its hash, {last_seq: last_hash}); checks the archives are contiguous."""
    end, end_hash, ends = 0, GENESIS, {}
    for first, last, last_hash in conn.execute(_ARCHIVES):
        if first != end + 1 or last < first:
            report.fail(end + 1, f"the archive of seq {first}..{last} does not follow seq {end}")
            break
        end, end_hash = last, last_hash
        ends[last] = last_hash
    return end, end_hash, ends


@contextlib.contextmanager
def read_snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection that sees one consistent state of the database until it closes."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                yield conn
            return
        conn = conn.execution_options(**READ_ONLY)  # one deferred read transaction, no write lock
        try:
            yield conn
        finally:
            conn.rollback()


def verify_log(source: Engine | Connection, *, progress: ProgressFn | None = None) -> VerifyReport:
    """Verify the live message log (it chains from the last archive, if any)."""
    if isinstance(source, Engine):
        with read_snapshot(source) as conn:
            return _verify(conn, progress)
    return _verify(source, progress)


def _verify(conn: Connection, progress: ProgressFn | None) -> VerifyReport:
    report = VerifyReport()
    keys = seal_keys(conn)
    start, start_hash, ends = archive_start(conn, report)
    if not report.ok:
        return report
    check = ChainCheck(report, start + 1, start_hash, keys)
    report.last_sealed_seq = start  # an archive ends at a seal
    # Seals of archived records stay in the table only when made after archiving.
    for seal in read_seals(conn, -1, start):
        if not check.check_seal(seal, ends.get(seal.seq)):
            return report
    top = conn.execute(text("SELECT MAX(seq) FROM message_log")).scalar()
    total = max(int(top) - start, 0) if isinstance(top, int) else 0
    after = start
    while True:
        rows = conn.execute(_RECORDS, {"after": after}).all()
        if not rows:
            break
        last = rows[-1][0]
        if not isinstance(last, int):
            last = _MAX_SEQ
        check.add_seals(read_seals(conn, after, last))
        if not check.feed(rows):
            return report
        after = last
        if progress is not None:
            progress(report.records, max(total, report.records))
        if len(rows) < CHUNK:
            break
    check.add_seals(read_seals(conn, after, _MAX_SEQ))
    return check.finish()
