"""A message log of several chains, one per writer (protocol §6, "Several chains" and
"Instance checkpoints"): each chain verifies on its own, the signed checkpoints tie them into
one whole, and whatever is done to one chain is reported with that chain and its first bad seq.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from dargah.bus.log.archive import archive_log, log_chains
from dargah.bus.log.backends import open_backend
from dargah.bus.log.chain import FIELDS, log_id, record_hash
from dargah.bus.log.search import LogQuery, search_log
from dargah.bus.log.verify import verify_log
from dargah.bus.log.writer import LogWriter
from dargah.cli.log import log as log_command
from dargah.oversight.data_use import data_use
from dargah.registry.instance import subject_ref
from dargah.store.tables import message_log
from tests.log_factory import LogDB, make_record, open_logdb, run_writers

CHAINS = ("node-a-0", "node-b-0", "node-c-0")
CITIZEN = "0499370899"
COLS = ", ".join(f'"{f}"' for f in FIELDS)
PER_CHAIN = 60


def build_chains(
    db: LogDB,
    chains: tuple[str, ...] = CHAINS,
    n: int = PER_CHAIN,
    subject_ref: str | None = None,
) -> list[str]:
    """n records in each chain (sealed every 20), written by one writer per chain at the same
    time, every fifth about ``subject_ref`` if given; returns the log ids the writers answered."""

    def record(i: int) -> dict[str, Any]:
        rec = make_record(i)
        if subject_ref is not None and i % 5 == 0:
            rec["subject_ref"] = subject_ref
        return rec

    async def body(*writers: LogWriter) -> list[str]:
        ids: list[str] = []
        for wave in range(3):
            calls = [
                w.append(record(i * 10 + k + wave * 1000))
                for i, w in enumerate(writers)
                for k in range(n // 3)
            ]
            seqs = await asyncio.gather(*calls)
            per = n // 3
            ids += [writers[j // per].log_id(seq) for j, seq in enumerate(seqs)]
        return ids

    writers = [db.writer(seal_every_records=20, chain=c) for c in chains]
    result: list[str] = run_writers(writers, body)
    return result


@pytest.fixture
def db(tmp_path: Path, database_url: str) -> Iterator[LogDB]:
    with open_logdb(tmp_path / "home", database_url) as db:
        yield db


def test_writers_of_separate_chains_make_one_log_that_verifies_whole(db: LogDB) -> None:
    ids = build_chains(db)
    assert len(ids) == len(set(ids)) == PER_CHAIN * len(CHAINS)
    assert {i.rpartition(":")[0] for i in ids} == set(CHAINS)
    report = verify_log(db.engine)
    assert report.ok, report.failure_line()
    assert set(report.chains) == set(CHAINS)
    assert report.records == PER_CHAIN * len(CHAINS)
    for chain in CHAINS:
        sub = report.chains[chain]
        assert (sub.first_seq, sub.last_seq, sub.last_sealed_seq) == (1, PER_CHAIN, PER_CHAIN)
    # every writer signed checkpoints at its start and stop, each naming every chain it saw
    assert report.checkpoints >= 2 * len(CHAINS)
    heads = [json.loads(r[0]) for r in db.rows("SELECT heads FROM message_log_checkpoint")]
    final = {h["chain"]: h["seq"] for h in heads[-1]}
    assert final == dict.fromkeys(CHAINS, PER_CHAIN)
    # each record's hash covers its chain: the same fields in another chain hash differently
    row = db.rows(f"SELECT {COLS} FROM message_log LIMIT 1")[0]
    rec = dict(zip(FIELDS, row, strict=True))
    assert record_hash(rec["prev_hash"], rec) == rec["hash"]
    assert record_hash(rec["prev_hash"], {**rec, "chain": "elsewhere-0"}) != rec["hash"]
    assert log_id("", 7) == "7" and log_id("node-a-0", 7) == "node-a-0:7"


def _swap(db: LogDB, chain: str, a: int, b: int) -> None:
    cols = [f for f in FIELDS if f not in ("chain", "seq")]
    quoted = ", ".join(f'"{c}"' for c in cols)
    rows = {
        seq: dict(zip(cols, vals, strict=True))
        for seq, *vals in db.rows(
            f"SELECT seq, {quoted} FROM message_log WHERE chain = :c AND seq IN (:a, :b)",
            c=chain,
            a=a,
            b=b,
        )
    }
    sets = ", ".join(f'"{c}" = :{c}' for c in cols)
    for seq, other in ((a, b), (b, a)):
        db.sql(
            f"UPDATE message_log SET {sets} WHERE chain = :chain AND seq = :seq",
            chain=chain,
            seq=seq,
            **rows[other],
        )


def _insert(db: LogDB, chain: str, at: int) -> None:
    """A record slipped in at ``at`` with a hash an attacker can compute (no key needed), the
    records after it moved up by one."""
    cols = ", ".join(f'"{f}"' for f in FIELDS)
    rows = db.rows(
        f"SELECT {cols} FROM message_log WHERE chain = :c AND seq >= :at ORDER BY seq",
        c=chain,
        at=at,
    )
    prev = db.scalar(
        "SELECT hash FROM message_log WHERE chain = :c AND seq = :s", c=chain, s=at - 1
    )
    db.sql("DELETE FROM message_log WHERE chain = :c AND seq >= :at", c=chain, at=at)
    forged = {**make_record(999), "chain": chain, "seq": at, "prev_hash": prev}
    forged["hash"] = record_hash(prev, forged)
    marks = ", ".join(f":{f}" for f in FIELDS)
    insert = f"INSERT INTO message_log ({cols}) VALUES ({marks})"
    db.sql(insert, **{f: forged.get(f) for f in FIELDS})
    for row in rows:
        rec = dict(zip(FIELDS, row, strict=True))
        db.sql(insert, **{**rec, "seq": rec["seq"] + 1})


def _truncate(db: LogDB, chain: str, after: int) -> None:
    """The chain's newest records cut off, with their seals: the chain itself still verifies."""
    db.sql("DELETE FROM message_log WHERE chain = :c AND seq > :s", c=chain, s=after)
    db.sql("DELETE FROM message_log_seal WHERE chain = :c AND seq > :s", c=chain, s=after)


def _drop(db: LogDB, chain: str) -> None:
    for table in ("message_log", "message_log_seal", "message_log_chain"):
        db.sql(f"DELETE FROM {table} WHERE chain = :c", c=chain)


TAMPERING: dict[str, tuple[Callable[[LogDB, str], None], int, str]] = {
    "change": (
        lambda db, c: db.sql(
            "UPDATE message_log SET purpose = 'something else' WHERE chain = :c AND seq = 17",
            c=c,
        ),
        17,
        "hash does not match",
    ),
    "delete": (
        lambda db, c: db.sql("DELETE FROM message_log WHERE chain = :c AND seq = 33", c=c),
        33,
        "record 33 is missing",
    ),
    "insert": (lambda db, c: _insert(db, c, 25), 26, "prev_hash does not match"),
    "reorder": (lambda db, c: _swap(db, c, 41, 42), 41, "prev_hash does not match"),
    "truncate": (lambda db, c: _truncate(db, c, 45), 46, "the chain ends at seq 45"),
    "drop the chain": (_drop, 1, "the chain is missing"),
}


@pytest.mark.parametrize("how", list(TAMPERING))
def test_tampering_with_one_chain_is_reported_with_that_chain_and_its_first_bad_seq(
    db: LogDB, how: str
) -> None:
    build_chains(db)
    assert verify_log(db.engine).ok
    tamper, bad_seq, why = TAMPERING[how]
    tamper(db, "node-b-0")
    report = verify_log(db.engine)
    assert not report.ok, how
    assert (report.chain, report.first_bad_seq) == ("node-b-0", bad_seq), report.failure_line()
    assert why in (report.reason or ""), report.reason
    assert "in chain node-b-0 at seq" in report.failure_line()
    # the other chains are intact, and said so
    assert report.chains["node-a-0"].ok and report.chains["node-c-0"].ok
    # the command line says the same and fails
    home = ["--home", str(db.settings.home)]
    env = {"DARGAH_DATABASE_URL": db.settings.database_url}
    out = CliRunner().invoke(log_command, ["verify", *home], env=env)
    assert out.exit_code == 1, out.output
    assert f"FAILED in chain node-b-0 at seq {bad_seq}" in out.output


def test_a_changed_or_forged_checkpoint_fails_verification(db: LogDB) -> None:
    build_chains(db, CHAINS[:2])
    first = db.scalar("SELECT MIN(id) FROM message_log_checkpoint")
    heads = json.loads(db.scalar("SELECT heads FROM message_log_checkpoint WHERE id = :i", i=first))
    heads.append({"chain": "node-z-0", "seq": 5, "hash": "0" * 64})
    db.sql(
        "UPDATE message_log_checkpoint SET heads = :h WHERE id = :i",
        h=json.dumps(heads),
        i=first,
    )
    report = verify_log(db.engine)
    assert not report.ok
    assert f"checkpoint {first}" in (report.reason or "")
    assert "does not verify" in (report.reason or "")


def test_an_instance_of_one_unnamed_chain_keeps_verifying_and_its_log_ids_stay_plain(
    db: LogDB,
) -> None:
    async def body(w: LogWriter) -> list[str]:
        return [
            w.log_id(s)
            for s in await asyncio.gather(*(w.append(make_record(i)) for i in range(30)))
        ]

    ids = run_writers([db.writer()], body)
    assert sorted(ids, key=int) == [str(i) for i in range(1, 31)]
    assert db.scalar("SELECT COUNT(*) FROM message_log WHERE chain = ''") == 30
    assert db.scalar("SELECT COUNT(*) FROM message_log_checkpoint") == 0  # seals suffice
    # a node writing a chain of its own joins: both verify together
    build_chains(db, ("node-a-0",), 30)
    report = verify_log(db.engine)
    assert report.ok, report.failure_line()
    assert set(report.chains) == {"", "node-a-0"}


def test_archiving_search_and_who_used_my_data_cover_every_chain(db: LogDB, tmp_path: Path) -> None:
    with db.engine.connect() as conn:
        citizen = subject_ref(conn, CITIZEN)
    build_chains(db, subject_ref=citizen)
    archived = []
    for chain in log_chains(db.engine):
        while done := archive_log(db.engine, tmp_path / "archive", chain=chain, before_seq=31):
            archived.append(done)
    assert sorted((a.chain, a.first_seq, a.last_seq) for a in archived) == [
        (c, 1, 20)
        for c in CHAINS  # sealed every 20 records: archived up to seq 20
    ]
    report = verify_log(db.engine)
    assert report.ok, report.failure_line()
    for chain in CHAINS:
        assert report.chains[chain].first_seq == 21
    # the archive files verify on their own, and say their chain
    for a in archived:
        out = CliRunner().invoke(log_command, ["verify", "--archive", str(a.path)])
        assert out.exit_code == 0, out.output
        assert a.chain in a.path.name
    # writers index their own chains; a search sees every chain, indexed or not
    for chain in CHAINS:
        backend = open_backend(db.settings.db_url, "process", chain)
        try:
            backend.index_lookups()
        finally:
            backend.close()
    subject = make_record(5)["subject_ref"]
    with db.engine.connect() as conn:
        expected = {
            (c, s)
            for c, s in conn.execute(
                select(message_log.c.chain, message_log.c.seq).where(
                    message_log.c.subject_ref == subject
                )
            )
        }
        assert {c for c, _s in expected} == set(CHAINS)
        # page by page, a few at a time: no record of any chain is missed or repeated
        found: list[tuple[str, int]] = []
        before = None
        while True:
            page = search_log(conn, LogQuery(subject_ref=subject, before=before, limit=4))
            if not page:
                break
            found += [(r["chain"], r["seq"]) for r in page]
            before = page[-1]["seq"]
        assert len(found) == len(set(found)) and set(found) == expected
        # by request id, in any chain
        rid = conn.execute(
            text("SELECT request_id FROM message_log WHERE chain = 'node-c-0' AND seq = 50")
        ).scalar()
        hits = search_log(conn, LogQuery(request_id=rid))
        assert [(h["chain"], h["seq"]) for h in hits] == [("node-c-0", 50)]
        assert hits[0]["seal"]["seq"] >= 50
        # "who used my data": every chain's records about the citizen, page by page
        mine = {(c, s) for c, s in expected_of(conn, citizen)}
        assert {c for c, _s in mine} == set(CHAINS)
        seen: list[tuple[str, int]] = []
        older = None
        while page := data_use(conn, CITIZEN, before=older, limit=7):
            seen += [(r["chain"], r["seq"]) for r in page]
            older = page[-1]["seq"]
        assert len(seen) == len(set(seen)) and set(seen) == mine


def expected_of(conn: Any, ref: str) -> list[tuple[str, int]]:
    query = select(message_log.c.chain, message_log.c.seq).where(message_log.c.subject_ref == ref)
    return [(str(c), int(s)) for c, s in conn.execute(query)]


def test_a_log_from_before_chains_verifies_after_the_upgrade_and_takes_named_chains(
    db: LogDB, tmp_path: Path
) -> None:
    from alembic import command

    from dargah.store.db import alembic_config

    for n in (50, 10):  # two runs: each seals its tail when it stops

        async def body(w: LogWriter, n: int = n) -> None:
            await asyncio.gather(*(w.append(make_record(i)) for i in range(n)))

        run_writers([db.writer()], body)
    assert archive_log(db.engine, tmp_path / "archive", before_seq=51) is not None
    cfg = alembic_config(db.engine)
    command.downgrade(cfg, "0012")  # the tables as they were before chains
    assert db.scalar("SELECT COUNT(*) FROM message_log") == 10
    command.upgrade(cfg, "head")
    assert db.scalar("SELECT COUNT(*) FROM message_log WHERE chain = ''") == 10
    assert db.scalar("SELECT COUNT(*) FROM message_log_archive WHERE chain = ''") == 1
    assert [r[0] for r in db.rows("SELECT chain FROM message_log_chain")] == [""]
    report = verify_log(db.engine)
    assert report.ok, report.failure_line()
    assert (report.first_seq, report.last_seq, report.records) == (51, 60, 10)
    build_chains(db, ("node-a-0",), 30)
    report = verify_log(db.engine)
    assert report.ok, report.failure_line()
    assert set(report.chains) == {"", "node-a-0"} and report.records == 40


def test_each_process_of_a_node_claims_a_stable_chain_of_its_own(tmp_path: Path) -> None:
    from dargah.bus.log.chains import claim_chain, node_name
    from dargah.core.settings import Settings

    pg = "postgresql://nobody@127.0.0.1:1/none"  # never connected to: only the mode matters
    home = tmp_path / "home"
    assert claim_chain(Settings(home=home)).chain == ""  # SQLite: one chain, as before
    assert claim_chain(Settings(home=home, database_url=pg, log_chains="single")).chain == ""
    settings = Settings(home=home, database_url=pg)
    name = node_name(settings)
    assert (home / "node-name").read_text().strip() == name  # kept for the next start
    first, second = claim_chain(settings), claim_chain(settings)
    assert (first.chain, second.chain) == (f"{name}-0", f"{name}-1")
    first.release()  # a process that stops (or dies) frees its slot for the next one
    third = claim_chain(settings)
    assert third.chain == f"{name}-0"
    for slot in (second, third):
        slot.release()
    named = Settings(home=home, database_url=pg, node_name="tehran-2")
    slot = claim_chain(named)
    assert slot.chain == "tehran-2-0"
    slot.release()
    with pytest.raises(ValueError):
        claim_chain(Settings(home=home, database_url=pg, node_name="no spaces"))
    with pytest.raises(ValueError):
        claim_chain(Settings(home=home, log_chains="sometimes"))


def test_a_chain_held_by_a_session_its_writer_lost_is_taken_over(pg_database_url: str) -> None:
    """A writer cut off from the server leaves a session that still holds its chain's lock
    (the server has not seen it die); the writer, back, takes its chain over after a few
    seconds, and the old session can commit nothing more."""
    import psycopg

    from dargah.bus.log.postgres import PostgresLog

    with open_logdb(Path(tempfile.mkdtemp()) / "home", pg_database_url) as db:
        url = db.settings.db_url.replace("postgresql+psycopg://", "postgresql://", 1)
        stale = PostgresLog(url, "node-a-0")
        stale.register()
        stale.append([make_record(1)], [None])
        began = time.monotonic()
        back = PostgresLog(url, "node-a-0")
        try:
            took = time.monotonic() - began
            assert 4 < took < 15, took
            back.append([make_record(2)], [None])
            with pytest.raises(psycopg.Error):
                stale.append([make_record(3)], [None])
        finally:
            back.close()
            with contextlib.suppress(Exception):
                stale.close()
        assert db.scalar("SELECT COUNT(*) FROM message_log WHERE chain = 'node-a-0'") == 2
        assert verify_log(db.engine).ok
