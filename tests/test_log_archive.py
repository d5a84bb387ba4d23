"""Archiving: sealed records move to files that verify on their own and chain to the live log.

Logs are written by the real writer (300 records, sealed at 60, 120, ... 300),
on SQLite and PostgreSQL; archive files are real gzip files in the home.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dargah.bus.log.archive import LogIntegrityError, archive_log, check_archive_file
from dargah.bus.log.archive_file import (
    chain_archives,
    encode_line,
    read_bodies,
    verify_archive_file,
)
from dargah.bus.log.bodies import StoredBody, body_keys, decrypt, matches_record, stored_body
from dargah.bus.log.chain import canonical, seal_payload
from dargah.bus.log.verify import verify_log
from dargah.bus.log.writer import LogWriter
from dargah.cli.log import log
from dargah.core.keys import EdDSASigner, generate_ed25519, public_jwk
from dargah.registry.instance import active_keys
from tests.log_factory import LogDB, append_many, build_log, make_record, open_logdb, run_writers

N = 300
Lines = list[dict[str, Any]]


@pytest.fixture
def db(tmp_path: Path, database_url: str) -> Iterator[LogDB]:
    with open_logdb(tmp_path / "home", database_url) as db:
        build_log(db, N, seal_every_records=40, waves=10)
        yield db


def read_lines(path: Path) -> Lines:
    with gzip.open(path, "rb") as f:
        return [json.loads(line) for line in f]


def rewrite(path: Path, edit: Callable[[Lines], Lines]) -> None:
    lines = edit(read_lines(path))
    with gzip.open(path, "wb") as f:
        for obj in lines:
            f.write(encode_line(obj))


def is_record(obj: dict[str, Any], seq: int | None = None) -> bool:
    return len(obj) > 1 and "hash" in obj and (seq is None or obj["seq"] == seq)


def live_seqs(db: LogDB) -> tuple[int, int, int]:
    row = db.rows("SELECT MIN(seq), MAX(seq), COUNT(*) FROM message_log")[0]
    return int(row[0] or 0), int(row[1] or 0), int(row[2])


def test_archiving_moves_sealed_records_before_a_seq_into_a_file_in_the_home(db: LogDB) -> None:
    made = archive_log(db.engine, db.settings, before_seq=200)
    assert made is not None
    assert (made.first_seq, made.last_seq, made.records) == (1, 180, 180)  # the seal at 180
    assert made.path.parent == (db.settings.home / "archive").resolve() and made.path.exists()
    assert live_seqs(db) == (181, N, N - 180)
    assert min(seq for (seq,) in db.rows("SELECT seq FROM message_log_seal")) > 180
    (row,) = db.rows("SELECT first_seq, last_seq, last_hash, file, sha256 FROM message_log_archive")
    assert tuple(row) == (1, 180, made.last_hash, str(made.path), made.sha256)


def test_the_archive_file_verifies_on_its_own_and_against_the_instance(db: LogDB) -> None:
    made = archive_log(db.engine, db.settings, before_seq=200)
    assert made is not None
    alone = verify_archive_file(made.path)
    assert alone.ok, alone.failure_line()
    assert (alone.records, alone.first_seq, alone.last_seq, alone.last_sealed_seq) == (
        180,
        1,
        180,
        180,
    )
    assert alone.seals == made.seals >= 3 and alone.end_hash == made.last_hash
    with db.engine.connect() as conn:
        against = check_archive_file(conn, made.path)
    assert against.ok and against.warnings == []


def test_the_live_log_still_verifies_and_chains_to_the_archive(db: LogDB) -> None:
    made = archive_log(db.engine, db.settings, before_seq=200)
    assert made is not None
    report = verify_log(db.engine)
    assert report.ok, report.failure_line()
    assert (report.first_seq, report.last_seq, report.records) == (181, N, N - 180)
    assert report.start_hash == made.last_hash
    db.sql("UPDATE message_log_archive SET last_hash = :h", h="cd" * 32)
    broken = verify_log(db.engine)
    assert (broken.ok, broken.first_bad_seq) == (False, 181)


def _cut_tail(lines: Lines) -> Lines:
    """Drop records 151.. and their seals, and make the header say so (without its key)."""
    kept = [
        o for o in lines[1:] if not (o.get("seq", 0) > 150 or o.get("seal", {}).get("seq", 0) > 150)
    ]
    last = next(o for o in kept if is_record(o, 150))
    return [{**lines[0], "last_seq": 150, "records": 150, "last_hash": last["hash"]}, *kept]


TAMPERING: dict[str, tuple[Callable[[Lines], Lines], int | None]] = {
    "a record's field changed": (
        lambda ls: [{**o, "status": 500} if is_record(o, 50) else o for o in ls],
        50,
    ),
    "a record removed": (lambda ls: [o for o in ls if not is_record(o, 50)], 50),
    "two records swapped": (
        lambda ls: [
            next(r for r in ls if is_record(r, 71)) | {"seq": 70} if is_record(o, 70) else o
            for o in ls
        ],
        70,
    ),
    "a seal altered": (
        lambda ls: [
            {"seal": {**o["seal"], "ts": "2020-01-01T00:00:00.000000Z"}} if "seal" in o else o
            for o in ls
        ],
        60,
    ),
    "a seal removed": (
        lambda ls: [o for o in ls if "seal" not in o or o["seal"]["seq"] != 60],
        180,
    ),
    "the newest records cut off": (_cut_tail, 1),
    "the oldest records cut off": (
        lambda ls: [
            {**ls[0], "first_seq": 11, "records": 170, "prev_hash": ls[0]["prev_hash"]},
            *[o for o in ls[1:] if not (is_record(o) and o["seq"] <= 10)],
        ],
        11,
    ),
    "the header's counts changed": (lambda ls: [{**ls[0], "seals": 1}, *ls[1:]], 1),
}


@pytest.mark.parametrize("tampering", list(TAMPERING))
def test_tampering_with_an_archive_file_is_detected(db: LogDB, tampering: str) -> None:
    made = archive_log(db.engine, db.settings, before_seq=200)
    assert made is not None
    edit, bad_seq = TAMPERING[tampering]
    rewrite(made.path, edit)
    report = verify_archive_file(made.path)
    assert not report.ok
    assert report.first_bad_seq == bad_seq, report.reason


def test_a_truncated_archive_file_is_detected(db: LogDB) -> None:
    made = archive_log(db.engine, db.settings, before_seq=200)
    assert made is not None
    data = made.path.read_bytes()
    made.path.write_bytes(data[: len(data) // 2])
    report = verify_archive_file(made.path)
    assert not report.ok and "cannot be read" in (report.reason or "")


def test_an_archive_re_signed_by_an_intruder_fails_against_the_instance(db: LogDB) -> None:
    made = archive_log(db.engine, db.settings, before_seq=200)
    assert made is not None
    intruder_key = generate_ed25519()

    def resign(lines: Lines) -> Lines:
        header = lines[0]
        signer = EdDSASigner(intruder_key, header["kid"])
        out: Lines = []
        for obj in lines[1:]:
            if "jwk" in obj:
                obj = {"jwk": {**public_jwk(intruder_key), "kid": obj["jwk"]["kid"]}}
            elif is_record(obj, 50):
                obj = {**obj, "duration_us": 1}
            elif "seal" in obj:
                s = obj["seal"]
                sig = signer.sign_bytes(seal_payload(s["seq"], s["hash"], s["ts"]))
                obj = {"seal": {**s, "signature": sig}}
            out.append(obj)
        unsigned = {k: v for k, v in header.items() if k != "signature"}
        return [{**unsigned, "signature": signer.sign_bytes(canonical(unsigned))}, *out]

    rewrite(made.path, resign)  # a changed record, re-chained: the seals no longer match...
    assert verify_archive_file(made.path).first_bad_seq == 50
    rewrite(made.path, lambda ls: [{**o, "duration_us": 1} if is_record(o, 50) else o for o in ls])
    with db.engine.connect() as conn:
        report = check_archive_file(conn, made.path)
    assert not report.ok and "not one of the bus's seal keys" in (report.reason or "")


def test_a_recompressed_archive_no_longer_matches_what_the_database_recorded(db: LogDB) -> None:
    made = archive_log(db.engine, db.settings, before_seq=200)
    assert made is not None
    made.path.write_bytes(gzip.compress(gzip.decompress(made.path.read_bytes()), compresslevel=1))
    assert verify_archive_file(made.path).ok
    with db.engine.connect() as conn:
        report = check_archive_file(conn, made.path)
    assert not report.ok and "SHA-256" in (report.reason or "")


def test_new_records_after_archiving_everything_continue_the_chain(db: LogDB) -> None:
    first = archive_log(db.engine, db.settings)
    assert first is not None and first.last_seq == N
    assert live_seqs(db) == (0, 0, 0)
    assert verify_log(db.engine).ok
    seqs = run_writers([db.writer()], lambda w: append_many(w, 50, start=N))
    assert sorted(seqs) == list(range(N + 1, N + 51))
    report = verify_log(db.engine)
    assert report.ok, report.failure_line()
    assert report.first_seq == N + 1 and report.start_hash == first.last_hash
    second = archive_log(db.engine, db.settings)
    assert second is not None and (second.first_seq, second.last_seq) == (N + 1, N + 50)
    reports = [(p, verify_archive_file(p)) for p in (first.path, second.path)]
    assert all(r.ok for _p, r in reports) and chain_archives(reports) == []
    assert verify_log(db.engine).ok


def test_only_sealed_records_are_archived(db: LogDB) -> None:
    db.sql("DELETE FROM message_log_seal WHERE seq > 240")
    made = archive_log(db.engine, db.settings)
    assert made is not None and made.last_seq == 240
    assert live_seqs(db) == (241, N, N - 240)
    report = verify_log(db.engine)
    assert report.ok and report.warnings  # the unsealed tail stays, and is reported


def test_a_large_archive_is_split_into_files_that_each_end_at_a_seal(db: LogDB) -> None:
    made = []
    while (done := archive_log(db.engine, db.settings, max_records=100)) is not None:
        made.append(done)
    assert [(m.first_seq, m.last_seq) for m in made] == [(i - 59, i) for i in range(60, N + 1, 60)]
    reports = [(m.path, verify_archive_file(m.path)) for m in made]
    assert all(r.ok for _p, r in reports) and chain_archives(reports) == []
    assert chain_archives([reports[0], reports[2]]) != []  # one file missing in between


def test_nothing_is_archived_before_the_first_seal(db: LogDB) -> None:
    assert archive_log(db.engine, db.settings, before_seq=50) is None
    assert live_seqs(db) == (1, N, N)
    assert list((db.settings.home / "archive").iterdir()) == []


def test_records_younger_than_the_limit_stay_in_the_live_log(db: LogDB) -> None:
    assert archive_log(db.engine, db.settings, older_than=timedelta(days=1)) is None
    made = archive_log(db.engine, db.settings, older_than=timedelta(0))
    assert made is not None and made.last_seq == N


def test_a_log_that_does_not_verify_is_not_archived(db: LogDB) -> None:
    db.sql("UPDATE message_log SET status = 299 WHERE seq = 77")
    with pytest.raises(LogIntegrityError, match="at seq 77"):
        archive_log(db.engine, db.settings)
    assert live_seqs(db) == (1, N, N)
    assert db.rows("SELECT * FROM message_log_archive") == []
    assert list((db.settings.home / "archive").iterdir()) == []


RESPONSE = '{"name": "زهرا"}'.encode()


@pytest.mark.parametrize("chain", ["", "node-a-0"])
def test_stored_bodies_move_to_the_archive_still_encrypted(db: LogDB, chain: str) -> None:
    with db.engine.connect() as conn:
        body_key = active_keys(conn)["body"]
    aes = AESGCM(bytes.fromhex(body_key.private))

    async def with_bodies(w: LogWriter) -> list[int]:
        seqs = []
        for i in range(5):
            rec = make_record(1000 + i)
            rec["response_hash"] = hashlib.sha256(RESPONSE).hexdigest()
            n1, n2 = os.urandom(12), os.urandom(12)
            aad = rec["request_id"].encode()
            body = (
                body_key.kid,
                n1 + n2,
                aes.encrypt(n1, b'{"q": %d}' % i, aad),
                aes.encrypt(n2, RESPONSE, aad),
            )
            seqs.append(await w.append(rec, body))
        return seqs

    seqs = run_writers([db.writer(chain=chain)], with_bodies)
    with db.engine.connect() as conn:
        assert stored_body(conn, seqs[0], chain) is not None
        assert stored_body(conn, seqs[0], "another-0") is None
        keys = body_keys(conn)
    made = archive_log(db.engine, db.settings, chain=chain)
    assert made is not None and made.bodies == 5
    assert db.rows("SELECT seq FROM message_log_body") == []
    archived = [StoredBody.from_archive(line) for line in read_bodies(made.path)]
    assert [b.seq for b in archived] == seqs
    lines = {o["seq"]: o for o in read_lines(made.path) if is_record(o)}
    for i, stored in enumerate(archived):
        record = lines[stored.seq]
        request, response = decrypt(stored, keys, record["request_id"])
        assert request == b'{"q": %d}' % i
        assert response is not None and response.decode() == '{"name": "زهرا"}'
        assert matches_record(record, response)
    assert verify_archive_file(made.path).ok


def test_the_cli_archives_and_verifies_archive_files(db: LogDB, database_url: str) -> None:
    runner = CliRunner()
    env = {"DARGAH_DATABASE_URL": database_url}
    home = ["--home", str(db.settings.home)]
    done = runner.invoke(log, ["archive", *home, "--before-seq", "130"], env=env)
    assert done.exit_code == 0, done.output
    path = Path(json.loads(done.output)["path"])
    assert path.exists()
    again = runner.invoke(log, ["archive", *home], env=env)
    second = Path(json.loads(again.output)["path"])
    alone = runner.invoke(log, ["verify", "--archive", str(second), "--archive", str(path)])
    assert alone.exit_code == 0, alone.output
    assert "120 records (seq 1..120)" in alone.output and "message log" not in alone.output
    full = runner.invoke(log, ["verify", *home, "--archive", str(path)], env=env)
    assert full.exit_code == 0, full.output
    assert "message log: 0 records" in full.output
    shown = runner.invoke(log, ["show", *home, "--last", "3"], env=env)
    assert shown.exit_code == 0 and shown.output == ""  # everything is archived
    rewrite(path, lambda ls: [{**o, "duration_us": -1} if is_record(o, 12) else o for o in ls])
    broken = runner.invoke(log, ["verify", "--archive", str(path)])
    assert broken.exit_code == 1
    assert "FAILED at seq 12" in broken.output


def test_log_show_prints_records_as_json_lines(db: LogDB, database_url: str) -> None:
    runner = CliRunner()
    env = {"DARGAH_DATABASE_URL": database_url}
    home = ["--home", str(db.settings.home)]
    last = runner.invoke(log, ["show", *home, "--last", "3"], env=env)
    assert last.exit_code == 0, last.output
    records = [json.loads(line) for line in last.output.splitlines()]
    assert [r["seq"] for r in records] == [N - 2, N - 1, N]
    rid = records[0]["request_id"]
    one = runner.invoke(log, ["show", *home, "--request-id", rid], env=env)
    assert [json.loads(line) for line in one.output.splitlines()] == [records[0]]


def test_archiving_while_a_writer_appends_leaves_one_chain(db: LogDB) -> None:
    async def body(w: LogWriter) -> Any:
        task = asyncio.ensure_future(append_many(w, 200, start=N, concurrent=False))
        await asyncio.sleep(0.05)
        made = await asyncio.to_thread(archive_log, db.engine, db.settings)
        await task
        return made

    made = run_writers([db.writer(seal_every_records=20)], body)
    assert made is not None and made.last_seq >= N
    report = verify_log(db.engine)
    assert report.ok, report.failure_line()
    # The archive may have caught up with the whole log, or left a live tail after it.
    if report.first_seq is not None:
        assert report.first_seq == made.last_seq + 1 and report.last_seq == N + 200
    else:
        assert made.last_seq == N + 200
    assert verify_archive_file(made.path).ok
