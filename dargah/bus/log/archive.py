"""Archiving the message log: old sealed records move to files that verify on their own.

Each chain is archived on its own, into files of its own. The range to move
ends at a seal. The records are checked while they are
written (``archive_file.py`` describes the file); the file is fsynced and
renamed; then one transaction records it in ``message_log_archive`` and deletes
the moved records, seals and bodies from the live tables. The live log then
chains from the archive's last hash (the writer's tail falls back to it).
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import Connection, Engine, text

from dargah.bus.log.archive_file import encode_line, file_sha256, signed_header, verify_archive_file
from dargah.bus.log.backends import PG_LOCK_SQL
from dargah.bus.log.chain import FIELDS, GENESIS
from dargah.bus.log.lookup import keyed
from dargah.bus.log.verify import (
    CHUNK,
    ChainCheck,
    ProgressFn,
    VerifyReport,
    read_seals,
    read_snapshot,
    seal_keys,
)
from dargah.core.clock import now_rfc3339, rfc3339, utc_now
from dargah.core.keys import EdDSASigner, b64url, load_private_pem
from dargah.core.settings import Settings
from dargah.registry.instance import active_keys, instance_info

_COLS = ", ".join(f'"{f}"' for f in FIELDS)
_SEQ = FIELDS.index("seq")
_RANGE = text(
    f"SELECT {_COLS} FROM message_log WHERE chain = :chain AND seq > :after AND seq <= :last"
    f" ORDER BY seq LIMIT {CHUNK}"
)
_BODIES = text(
    "SELECT seq, kid, nonce, request_body, response_body FROM message_log_body"
    " WHERE chain = :chain AND seq > :after AND seq <= :last ORDER BY seq LIMIT 500"
)
_IN_RANGE = "WHERE chain = :chain AND seq >= :first AND seq <= :last"
_CHAINS = text(
    "SELECT chain FROM message_log_chain UNION SELECT DISTINCT chain FROM message_log_seal"
)
MAX_RECORDS = 100_000  # per file: the final transaction holds the write lock ~1 s


class LogIntegrityError(ValueError):
    """The records to archive do not verify; nothing was moved."""

    def __init__(self, report: VerifyReport) -> None:
        super().__init__(f"the log does not verify, nothing was archived: {report.failure_line()}")
        self.report = report


@dataclass(frozen=True)
class ArchiveFile:
    chain: str
    path: Path
    first_seq: int
    last_seq: int
    last_hash: str
    records: int
    seals: int
    bodies: int
    sha256: str


def archive_dir(where: Settings | Path) -> Path:
    """``{home}/archive`` for settings; a path is the directory itself."""
    return where.home / "archive" if isinstance(where, Settings) else Path(where)


def archive_log(
    engine: Engine,
    where: Settings | Path,
    *,
    before_seq: int | None = None,
    older_than: timedelta | None = None,
    max_records: int = MAX_RECORDS,
    chain: str = "",
) -> ArchiveFile | None:
    """Move the oldest sealed records (seq < before_seq, older than older_than) to a new file.

    Without limits every sealed record moves, up to ``max_records`` (which bounds how long
    the final transaction holds the log's write lock): call again for the rest. Returns
    None when there is nothing (more) to move.
    """
    directory = archive_dir(where)
    directory.mkdir(parents=True, exist_ok=True)
    with read_snapshot(engine) as conn:
        plan = _plan(conn, chain, before_seq, older_than, max_records)
        if plan is None:
            return None
        first, last, _prev, _last_hash = plan
        named = f"{chain}-" if chain else ""
        path = directory / f"log-{named}{first:012d}-{last:012d}.jsonl.gz"
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            seals, bodies = _write_file(conn, chain, plan, tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    os.replace(tmp, path)
    _fsync_dir(directory)
    digest = file_sha256(path)
    try:
        with engine.begin() as conn:
            _move(conn, chain, plan, path, digest)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return ArchiveFile(
        chain, path.resolve(), first, last, plan[3], last - first + 1, seals, bodies, digest
    )


def log_chains(engine: Engine) -> list[str]:
    """Every chain of the instance, in order."""
    with engine.connect() as conn:
        return sorted(str(c) for (c,) in conn.execute(_CHAINS))


def _plan(
    conn: Connection,
    chain: str,
    before_seq: int | None,
    older_than: timedelta | None,
    max_records: int,
) -> tuple[int, int, str, str] | None:
    """(first_seq, last_seq, prev_hash, last_hash) to archive: up to a seal, within the limits."""
    row = conn.execute(
        text(
            "SELECT last_seq, last_hash FROM message_log_archive WHERE chain = :chain"
            " ORDER BY last_seq DESC LIMIT 1"
        ),
        {"chain": chain},
    ).first()
    end, end_hash = (int(row[0]), str(row[1])) if row else (0, GENESIS)
    limit = end + max_records if before_seq is None else min(before_seq - 1, end + max_records)
    if older_than is not None:
        cutoff = rfc3339(utc_now() - older_than)
        young = conn.execute(
            text(
                "SELECT MIN(seq) FROM message_log WHERE chain = :chain AND seq > :end"
                " AND ts >= :cutoff"
            ),
            {"chain": chain, "end": end, "cutoff": cutoff},
        ).scalar()
        if young is not None:
            limit = min(limit, int(young) - 1)
    last = conn.execute(
        text(
            "SELECT MAX(seq) FROM message_log_seal WHERE chain = :chain AND seq > :end"
            " AND seq <= :limit"
        ),
        {"chain": chain, "end": end, "limit": limit},
    ).scalar()
    if last is None:
        return None
    last_hash = conn.execute(
        text("SELECT hash FROM message_log WHERE chain = :chain AND seq = :last"),
        {"chain": chain, "last": last},
    ).scalar()
    if last_hash is None:
        report = VerifyReport()
        report.fail(int(last), f"the seal at seq {last} points at a record that does not exist")
        raise LogIntegrityError(report)
    return end + 1, int(last), end_hash, str(last_hash)


def _write_file(
    conn: Connection, chain: str, plan: tuple[int, int, str, str], tmp: Path
) -> tuple[int, int]:
    """Write the archive of the planned range, checking every record and seal on the way."""
    first, last, prev_hash, last_hash = plan
    rng = {"chain": chain, "first": first, "last": last}
    n_seals = int(
        conn.execute(text(f"SELECT COUNT(*) FROM message_log_seal {_IN_RANGE}"), rng).scalar_one()
    )
    n_bodies = int(
        conn.execute(text(f"SELECT COUNT(*) FROM message_log_body {_IN_RANGE}"), rng).scalar_one()
    )
    kids = {
        str(k)
        for (k,) in conn.execute(
            text(f"SELECT DISTINCT kid FROM message_log_seal {_IN_RANGE}"), rng
        )
    }
    seal_key = active_keys(conn)["seal"]
    private = load_private_pem(seal_key.private.encode())
    if not isinstance(private, ed25519.Ed25519PrivateKey):
        raise RuntimeError("the bus's seal key must be Ed25519")
    signer = EdDSASigner(private, seal_key.kid)
    header = signed_header(
        signer,
        **({"chain": chain} if chain else {}),
        instance=instance_info(conn).code,
        first_seq=first,
        last_seq=last,
        prev_hash=prev_hash,
        last_hash=last_hash,
        records=last - first + 1,
        seals=n_seals,
        bodies=n_bodies,
        created_at=now_rfc3339(),
    )
    jwks = {}
    for kid, raw in conn.execute(text("SELECT kid, public_jwk FROM bus_keys WHERE use = 'seal'")):
        if kid in kids | {signer.kid} and raw:
            jwks[kid] = {**json.loads(raw), "kid": kid}
    report = VerifyReport()
    check = ChainCheck(report, first, prev_hash, seal_keys(conn))
    with open(tmp, "wb") as raw_file:
        with gzip.GzipFile("", "wb", 6, raw_file, mtime=0) as gz:
            gz.write(encode_line(header))
            for jwk in jwks.values():
                gz.write(encode_line({"jwk": jwk}))
            _write_records(conn, gz, check, chain, first, last)
            check.finish()
            if report.ok and report.last_sealed_seq != last:
                report.fail(last, f"the record at seq {last} is not sealed")
            if not report.ok:
                raise LogIntegrityError(report)
            _write_bodies(conn, gz, chain, first, last)
        raw_file.flush()
        os.fsync(raw_file.fileno())
    return n_seals, n_bodies


def _write_records(
    conn: Connection, out: gzip.GzipFile, check: ChainCheck, chain: str, first: int, last: int
) -> None:
    after = first - 1
    while after < last:
        rows = conn.execute(_RANGE, {"chain": chain, "after": after, "last": last}).all()
        if not rows:
            return
        hi = rows[-1][_SEQ] if isinstance(rows[-1][_SEQ], int) else last
        seals = read_seals(conn, after, hi, chain)
        check.add_seals(seals)
        if not check.feed(rows):
            raise LogIntegrityError(check.report)
        lines, i = [], 0
        for row in rows:
            lines.append(encode_line(dict(zip(FIELDS, row, strict=True))))
            while i < len(seals) and seals[i].seq == row[_SEQ]:
                lines.append(encode_line({"seal": seals[i].__dict__}))
                i += 1
        out.write(b"".join(lines))
        after = hi


def _write_bodies(conn: Connection, out: gzip.GzipFile, chain: str, first: int, last: int) -> None:
    after = first - 1
    while True:
        rows = conn.execute(_BODIES, {"chain": chain, "after": after, "last": last}).all()
        for seq, kid, nonce, request, response in rows:
            out.write(
                encode_line(
                    {
                        "body": {
                            "seq": seq,
                            "kid": kid,
                            "nonce": b64url(bytes(nonce)),
                            "request_body": None if request is None else b64url(bytes(request)),
                            "response_body": None if response is None else b64url(bytes(response)),
                        }
                    }
                )
            )
        if not rows:
            return
        after = rows[-1][0]


def _move(
    conn: Connection, chain: str, plan: tuple[int, int, str, str], path: Path, digest: str
) -> None:
    """Record the archive and delete what it holds from the live tables, in one transaction."""
    first, last, _prev, last_hash = plan
    if conn.dialect.name == "postgresql" and not chain:
        conn.execute(text(PG_LOCK_SQL))  # the unnamed chain's writers' lock
    # (on SQLite the engine's transactions begin with BEGIN IMMEDIATE: the writer's lock; a
    # named chain's writer only ever adds after its tail, which is not archived)
    end = conn.execute(
        text("SELECT MAX(last_seq) FROM message_log_archive WHERE chain = :chain"),
        {"chain": chain},
    ).scalar()
    if int(end or 0) != first - 1:
        raise RuntimeError("another archive was made meanwhile; run the archive again")
    conn.execute(
        text(
            "INSERT INTO message_log_archive (chain, first_seq, last_seq, last_hash, file,"
            " sha256, created_at)"
            " VALUES (:chain, :first, :last, :last_hash, :file, :sha256, :created_at)"
        ),
        {
            "chain": chain,
            "first": first,
            "last": last,
            "last_hash": last_hash,
            "file": str(path.resolve()),
            "sha256": digest,
            "created_at": now_rfc3339(),
        },
    )
    rng = {"chain": chain, "first": first, "last": last}
    subjects, requests = keyed(
        chain,
        conn.execute(
            text(f"SELECT seq, subject_ref, request_id FROM message_log {_IN_RANGE}"), rng
        ),
    )
    for table, column, rows in (
        ("message_log_subject", "subject_key", subjects),
        ("message_log_request", "request_key", requests),
    ):
        if rows:
            conn.execute(
                text(f"DELETE FROM {table} WHERE {column} = :k AND chain = :c AND seq = :s"),
                [{"k": k, "c": c, "s": s} for k, c, s in rows],
            )
    deleted = conn.execute(text(f"DELETE FROM message_log {_IN_RANGE}"), rng).rowcount
    if deleted != last - first + 1:
        raise RuntimeError(
            f"expected to move {last - first + 1} records, found {deleted}; nothing moved"
        )
    conn.execute(text(f"DELETE FROM message_log_body {_IN_RANGE}"), rng)
    # Seals of earlier archives' ends (made by writers starting on an empty log) go too.
    conn.execute(
        text("DELETE FROM message_log_seal WHERE chain = :chain AND seq <= :last"),
        {"chain": chain, "last": last},
    )


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_archive_file(
    conn: Connection, path: Path, *, progress: ProgressFn | None = None
) -> VerifyReport:
    """Verify an archive file with the bus's own keys, and against what the database recorded."""
    report = verify_archive_file(path, trusted_keys=seal_keys(conn), progress=progress)
    if report.first_seq is None:
        return report
    row = conn.execute(
        text(
            "SELECT last_seq, last_hash, sha256 FROM message_log_archive"
            " WHERE chain = :c AND first_seq = :f"
        ),
        {"c": report.chain, "f": report.first_seq},
    ).first()
    if row is None:
        report.warnings.append(f"the database has no archive starting at seq {report.first_seq}")
    elif (row[0], row[1]) != (report.last_seq, report.end_hash):
        report.fail(
            report.first_seq, f"the database recorded this archive as ending at seq {row[0]}"
        )
    elif row[2] != file_sha256(path):
        report.fail(
            report.first_seq, "the file's SHA-256 is not the one recorded when it was archived"
        )
    return report
