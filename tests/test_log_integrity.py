"""``dargah log verify`` finds every kind of tampering, at the first bad seq.

Each test writes a fresh log with the real group-commit writer (300 records,
sealed every 40 or so), tampers with it in SQL as an intruder with database
access would, and checks what verification reports. SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from dargah.bus.log.chain import FIELDS, record_hash, seal_payload
from dargah.bus.log.verify import verify_log
from dargah.cli.log import log
from dargah.core.keys import EdDSASigner, generate_ed25519
from tests.log_factory import LogDB, build_log, open_logdb

N = 300
TARGET = 137
INTEGER_FIELDS = {"status", "request_bytes", "response_bytes", "duration_us"}


@pytest.fixture
def db(tmp_path: Path, database_url: str) -> Iterator[LogDB]:
    with open_logdb(tmp_path / "home", database_url) as db:
        build_log(db, N, seal_every_records=40, waves=10)
        yield db


def seal_seqs(db: LogDB) -> list[int]:
    return sorted({row[0] for row in db.rows("SELECT seq FROM message_log_seal")})


def record(db: LogDB, seq: int) -> dict[str, object]:
    cols = ", ".join(f'"{f}"' for f in FIELDS)
    (row,) = db.rows(f"SELECT {cols} FROM message_log WHERE seq = :seq", seq=seq)
    return dict(zip(FIELDS, row, strict=True))


def insert_record(db: LogDB, rec: dict[str, object]) -> None:
    cols = ", ".join(f'"{f}"' for f in FIELDS)
    db.sql(f"INSERT INTO message_log ({cols}) VALUES ({', '.join(':' + f for f in FIELDS)})", **rec)


def test_an_intact_log_verifies(db: LogDB) -> None:
    calls: list[tuple[int, int]] = []
    report = verify_log(db.engine, progress=lambda done, total: calls.append((done, total)))
    assert report.ok, report.reason
    assert (report.records, report.first_seq, report.last_seq) == (N, 1, N)
    assert report.first_bad_seq is None and report.warnings == []
    assert report.last_sealed_seq == N
    assert report.seals >= len(seal_seqs(db)) >= 5
    assert calls[-1] == (N, N)


@pytest.mark.parametrize("field", FIELDS)
def test_changing_any_field_of_a_record_is_reported_at_that_seq(db: LogDB, field: str) -> None:
    if field == "seq":
        db.sql("UPDATE message_log SET seq = 1000000 WHERE seq = :seq", seq=TARGET)
    elif field in INTEGER_FIELDS:
        db.sql(f'UPDATE message_log SET "{field}" = "{field}" + 1 WHERE seq = :seq', seq=TARGET)
    else:  # the same length, one character changed (or a value where there was none)
        db.sql(
            f'UPDATE message_log SET "{field}" = CASE WHEN "{field}" IS NULL THEN \'a\''
            f" WHEN substr(\"{field}\", 1, 1) = 'a' THEN 'b' || substr(\"{field}\", 2)"
            f" ELSE 'a' || substr(\"{field}\", 2) END WHERE seq = :seq",
            seq=TARGET,
        )
    report = verify_log(db.engine)
    assert not report.ok
    assert report.first_bad_seq == TARGET, report.reason
    assert report.records == TARGET - 1


def test_a_deleted_record_is_reported_as_missing(db: LogDB) -> None:
    db.sql("DELETE FROM message_log WHERE seq = :seq", seq=TARGET)
    report = verify_log(db.engine)
    assert (report.ok, report.first_bad_seq) == (False, TARGET)
    assert report.reason == f"record {TARGET} is missing (the next record is {TARGET + 1})"


def test_deleting_the_newest_records_is_caught_by_the_seal_that_covered_them(db: LogDB) -> None:
    db.sql("DELETE FROM message_log WHERE seq > :seq", seq=N - 5)
    report = verify_log(db.engine)
    assert (report.ok, report.first_bad_seq) == (False, N)
    assert "points at a record that does not exist" in (report.reason or "")


def test_a_forged_record_inserted_into_the_chain_is_reported(db: LogDB) -> None:
    # The intruder renumbers the records after TARGET and slips in one that
    # chains correctly to its predecessor: the record it displaced no longer does.
    db.sql("UPDATE message_log SET seq = seq + 1000000 WHERE seq >= :seq", seq=TARGET)
    db.sql("UPDATE message_log SET seq = seq - 999999 WHERE seq >= 1000000")
    forged = {**record(db, TARGET - 1), "seq": TARGET, "path": "/persons/forged"}
    forged["prev_hash"] = record(db, TARGET - 1)["hash"]
    forged["hash"] = record_hash(str(forged["prev_hash"]), forged)
    insert_record(db, forged)
    report = verify_log(db.engine)
    assert (report.ok, report.first_bad_seq) == (False, TARGET + 1)


def test_a_record_appended_by_hand_is_reported(db: LogDB) -> None:
    insert_record(db, {**record(db, N), "seq": N + 1, "prev_hash": record(db, N)["hash"]})
    report = verify_log(db.engine)
    assert (report.ok, report.first_bad_seq) == (False, N + 1)
    assert report.reason == "hash does not match the record"


def test_two_records_swapped_are_reported_at_the_first_of_them(db: LogDB) -> None:
    a, b = record(db, 120), record(db, 160)
    sets = ", ".join(f'"{f}" = :{f}' for f in FIELDS if f != "seq")
    db.sql(f"UPDATE message_log SET {sets} WHERE seq = :seq", **{**b, "seq": 120})
    db.sql(f"UPDATE message_log SET {sets} WHERE seq = :seq", **{**a, "seq": 160})
    report = verify_log(db.engine)
    assert (report.ok, report.first_bad_seq) == (False, 120)


@pytest.mark.parametrize("forgery", ["another key", "unknown kid", "padded", "truncated"])
def test_a_forged_seal_signature_is_reported_at_its_seq(db: LogDB, forgery: str) -> None:
    seq = seal_seqs(db)[1]
    (seal,) = db.rows(
        "SELECT id, hash, ts, kid, signature FROM message_log_seal WHERE seq = :s", s=seq
    )
    if forgery in ("another key", "unknown kid"):
        kid = seal.kid if forgery == "another key" else "seal-intruder"
        signature = EdDSASigner(generate_ed25519(), kid).sign_bytes(
            seal_payload(seq, seal.hash, seal.ts)
        )
    else:
        kid = seal.kid
        signature = seal.signature + "==" if forgery == "padded" else seal.signature[:-2]
    db.sql(
        "UPDATE message_log_seal SET kid = :kid, signature = :sig WHERE id = :id",
        kid=kid,
        sig=signature,
        id=seal.id,
    )
    report = verify_log(db.engine)
    assert (report.ok, report.first_bad_seq) == (False, seq), report.reason
    assert "seal" in (report.reason or "")


def test_a_seal_whose_hash_was_altered_is_reported(db: LogDB) -> None:
    seq = seal_seqs(db)[2]
    db.sql("UPDATE message_log_seal SET hash = :h WHERE seq = :s", h="ab" * 32, s=seq)
    report = verify_log(db.engine)
    assert (report.ok, report.first_bad_seq) == (False, seq)


def test_a_seal_moved_to_another_record_is_reported(db: LogDB) -> None:
    seq = seal_seqs(db)[2]
    db.sql("UPDATE message_log_seal SET seq = :t WHERE seq = :s", t=seq - 1, s=seq)
    report = verify_log(db.engine)
    assert (report.ok, report.first_bad_seq) == (False, seq - 1)


def test_deleting_the_last_seal_leaves_an_unsealed_tail_that_only_warns(db: LogDB) -> None:
    seals = seal_seqs(db)
    db.sql("DELETE FROM message_log_seal WHERE seq = :s", s=seals[-1])
    report = verify_log(db.engine)
    assert report.ok
    assert report.last_sealed_seq == seals[-2]
    assert len(report.warnings) == 1
    assert f"records {seals[-2] + 1}..{N} are not sealed yet" in report.warnings[0]


def test_the_cli_exits_0_for_an_intact_log_and_1_with_the_first_bad_seq(
    db: LogDB, database_url: str
) -> None:
    runner = CliRunner()
    env = {"DARGAH_DATABASE_URL": database_url}
    args = ["verify", "--home", str(db.settings.home)]
    intact = runner.invoke(log, args, env=env)
    assert intact.exit_code == 0, intact.output
    assert f"{N} records (seq 1..{N})" in intact.output
    assert f"last sealed seq {N}" in intact.output and "intact" in intact.output
    db.sql("UPDATE message_log SET duration_us = 1 WHERE seq = :seq", seq=TARGET)
    broken = runner.invoke(log, args, env=env)
    assert broken.exit_code == 1
    assert f"FAILED at seq {TARGET}: hash does not match the record" in broken.output


def test_the_installed_command_reports_a_broken_log_with_exit_status_1(
    db: LogDB, database_url: str
) -> None:
    dargah = Path(sys.executable).parent / "dargah"
    env = {**os.environ, "DARGAH_DATABASE_URL": database_url}
    args = [str(dargah), "log", "verify", "--home", str(db.settings.home)]
    assert subprocess.run(args, env=env, capture_output=True, check=False).returncode == 0
    db.sql("DELETE FROM message_log WHERE seq = 42")
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "FAILED at seq 42: record 42 is missing" in done.stdout


def test_verifying_a_home_without_an_instance_fails_instead_of_creating_one(
    tmp_path: Path,
) -> None:
    result = CliRunner().invoke(
        log, ["verify", "--home", str(tmp_path / "nowhere")], env={"DARGAH_DATABASE_URL": ""}
    )
    assert result.exit_code == 1
    assert not (tmp_path / "nowhere").exists()
