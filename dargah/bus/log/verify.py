"""Verifying the message log: recompute every hash chain, check every seal and every instance
checkpoint (protocol §6).

Each chain of the live log is read in seq order, 10,000 records at a time, inside
one read snapshot, so that a concurrent writer or archiver cannot make it look broken.
Archive files (``archive_file.py``) go through the same :class:`ChainCheck`. The
check stops at the first bad record or seal: that is the lowest bad seq.

What is detected: a changed field (the hash no longer matches), a deleted
record (a gap), an inserted or reordered record (a gap or a broken chain), a
forged or altered seal (its signature), a seal whose hash is not its record's,
and a seal pointing at a record that does not exist (a truncated log). Records
after the last seal cannot be proven yet: that is a warning, not a failure.
With several chains, the signed instance checkpoints name the head of every
chain: a chain that is missing, truncated below a checkpointed head, or whose
record at a checkpointed seq is not the one named is reported with its chain and
first bad seq; so is a checkpoint whose signature does not verify.
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
from dargah.bus.log.checkpoints import checkpoint_heads
from dargah.bus.log.lookup import live_chains
from dargah.core.keys import b64url, b64url_decode, jwk_to_public_key
from dargah.store.db import READ_ONLY

CHUNK = 10_000
ProgressFn = Callable[[int, int], None]
SealKeys = Mapping[str, Ed25519PublicKey]

_SEQ, _PREV, _HASH = FIELDS.index("seq"), FIELDS.index("prev_hash"), FIELDS.index("hash")
_NO_SEAL = float("inf")
_MAX_SEQ = 2**62
_COLS = ", ".join(f'"{f}"' for f in FIELDS)
_RECORDS = text(
    f"SELECT {_COLS} FROM message_log WHERE chain = :chain AND seq > :after"
    f" ORDER BY seq LIMIT {CHUNK}"
)
_SEALS = text(
    "SELECT seq, hash, ts, kid, signature FROM message_log_seal"
    " WHERE chain = :chain AND seq > :lo AND seq <= :hi ORDER BY seq, id"
)
_ARCHIVES = text(
    "SELECT first_seq, last_seq, last_hash FROM message_log_archive WHERE chain = :chain"
    " ORDER BY first_seq"
)
_CHAINS = text(
    "SELECT chain FROM message_log_chain UNION SELECT DISTINCT chain FROM message_log_seal"
    " UNION SELECT DISTINCT chain FROM message_log_archive"
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
    chain: str = ""  # the chain checked; for the whole log, the first failing chain
    chains: dict[str, VerifyReport] = field(default_factory=dict)  # the whole log's, by chain
    checkpoints: int = 0  # instance checkpoints checked

    def fail(self, seq: int | None, reason: str) -> None:
        """Record a failure; the lowest seq wins."""
        if self.ok or (
            seq is not None and (self.first_bad_seq is None or seq < self.first_bad_seq)
        ):
            self.first_bad_seq, self.reason = seq, reason
        self.ok = False

    def summary(self) -> str:
        if len(self.chains) > 1:
            return (
                f"{len(self.chains)} chains, {self.records} records, {self.seals} seals and "
                f"{self.checkpoints} instance checkpoints checked"
            )
        span = f" (seq {self.first_seq}..{self.last_seq})" if self.records else ""
        chain = f"chain {self.chain}: " if self.chain else ""
        extra = f", {self.checkpoints} instance checkpoints" if self.checkpoints else ""
        return (
            f"{chain}{self.records} records{span}, {self.seals} seals{extra} checked, "
            f"last sealed seq {self.last_sealed_seq}"
        )

    def failure_line(self) -> str:
        where = (
            f"at seq {self.first_bad_seq}"
            if self.first_bad_seq is not None
            else "before any record"
        )
        if self.chain:
            where = f"in chain {self.chain} {where}"
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
        self.expected: dict[int, str] = {}  # hashes that instance checkpoints name, by seq
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
        expected_hashes = self.expected
        good = 0
        try:
            for row in rows:
                seq = row[_SEQ]
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
                if expected_hashes and expected_hashes.get(seq, h) != h:
                    rep.fail(seq, "the record is not the one an instance checkpoint names")
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


def read_seals(conn: Connection, lo: int, hi: int, chain: str = "") -> list[Seal]:
    """Seals of ``chain`` with lo < seq <= hi, in seq order."""
    rows = conn.execute(_SEALS, {"chain": chain, "lo": lo, "hi": hi})
    return [Seal(*row) for row in rows]


def archive_start(
    conn: Connection, report: VerifyReport, chain: str = ""
) -> tuple[int, str, dict[int, str]]:
    """(last archived seq, its hash, {last_seq: last_hash}) of a chain; checks its archives are
    contiguous."""
    end, end_hash, ends = 0, GENESIS, {}
    for first, last, last_hash in conn.execute(_ARCHIVES, {"chain": chain}):
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
    """Verify the live message log: every chain (each from its last archive, if any), every
    seal and every instance checkpoint."""
    if isinstance(source, Engine):
        with read_snapshot(source) as conn:
            return _verify(conn, progress)
    return _verify(source, progress)


def _verify(conn: Connection, progress: ProgressFn | None) -> VerifyReport:
    whole = VerifyReport()
    keys = seal_keys(conn)
    heads, whole.checkpoints, problems = checkpoint_heads(conn, keys)
    for problem in problems:
        whole.fail(None, problem)
    chains = sorted(
        {str(c) for (c,) in conn.execute(_CHAINS)} | set(live_chains(conn)) | set(heads)
    )
    total = int(conn.execute(text("SELECT COUNT(*) FROM message_log")).scalar() or 0)
    done = 0

    def step(records: int, _total: int) -> None:
        if progress is not None:
            progress(done + records, max(total, done + records))

    for chain in chains:
        report = _verify_chain(conn, chain, keys, heads.get(chain, {}), step)
        whole.chains[chain] = report
        done += report.records
    _combine(whole)
    return whole


def _combine(whole: VerifyReport) -> None:
    """The whole log's report from its chains': the counts, and the first failing chain."""
    reports = whole.chains
    for chain, rep in reports.items():
        whole.records += rep.records
        whole.seals += rep.seals
        whole.kids += [k for k in rep.kids if k not in whole.kids]
        prefix = f"chain {chain}: " if chain and len(reports) > 1 else ""
        whole.warnings += [prefix + w for w in rep.warnings]
        if not rep.ok and whole.ok:
            whole.ok, whole.chain = False, chain
            whole.first_bad_seq, whole.reason = rep.first_bad_seq, rep.reason
    if len(reports) == 1:  # one chain: the log's report is the chain's
        (rep,) = reports.values()
        whole.chain = rep.chain
        whole.first_seq, whole.last_seq = rep.first_seq, rep.last_seq
        whole.start_hash, whole.end_hash = rep.start_hash, rep.end_hash
        whole.last_sealed_seq = rep.last_sealed_seq


def _verify_chain(
    conn: Connection,
    chain: str,
    keys: SealKeys,
    expected: dict[int, str],
    progress: ProgressFn,
) -> VerifyReport:
    report = VerifyReport(chain=chain)
    start, start_hash, ends = archive_start(conn, report, chain)
    if not report.ok:
        return report
    check = ChainCheck(report, start + 1, start_hash, keys)
    check.expected = {seq: h for seq, h in expected.items() if seq > start}
    report.last_sealed_seq = start  # an archive ends at a seal
    for seq, h in expected.items():
        if seq <= start and seq in ends and ends[seq] != h:
            report.fail(seq, "the archived record is not the one an instance checkpoint names")
            return report
    # Seals of archived records stay in the table only when made after archiving.
    for seal in read_seals(conn, -1, start, chain):
        if not check.check_seal(seal, ends.get(seal.seq)):
            return report
    after = start
    while True:
        rows = conn.execute(_RECORDS, {"chain": chain, "after": after}).all()
        if not rows:
            break
        last = rows[-1][_SEQ]
        if not isinstance(last, int):
            last = _MAX_SEQ
        check.add_seals(read_seals(conn, after, last, chain))
        if not check.feed(rows):
            return report
        after = last
        progress(report.records, report.records)
        if len(rows) < CHUNK:
            break
    check.add_seals(read_seals(conn, after, _MAX_SEQ, chain))
    check.finish()
    end = report.last_seq if report.last_seq is not None else start
    top = max(expected, default=0)
    if report.ok and top > end:
        what = "is missing" if end == 0 else f"ends at seq {end}"
        report.fail(end + 1, f"the chain {what}, but an instance checkpoint names its record {top}")
    return report
