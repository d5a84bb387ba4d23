"""the message log keeps one chain per writer, and signed instance checkpoints

Every record, seal, stored body, lookup entry and archive names its ``chain``
(a short text id of its writer); ``seq`` counts within the chain, so the keys of
the records, bodies and lookup entries become (chain, seq). The records already
logged keep the unnamed chain (''), which hashes as before, so an existing
instance goes on verifying. ``message_log_chain`` lists the chains of the
instance; ``message_log_checkpoint`` holds the signed instance checkpoints.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

PROBLEMS = sa.text("outcome <> 'ok'")


def _chain() -> sa.Column[Any]:
    return sa.Column(
        "chain",
        sa.String(length=32),
        server_default=sa.text("''"),
        nullable=False,
        autoincrement=False,
    )


def _log_columns() -> list[sa.Column[Any]]:
    return [
        _chain(),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ts", sa.String(length=32), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("client", sa.String(length=120), nullable=True),
        sa.Column("service", sa.String(length=200), nullable=True),
        sa.Column("method", sa.String(length=16), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("query_hash", sa.String(length=64), nullable=True),
        sa.Column("purpose", sa.Text(), nullable=True),
        sa.Column("subject_ref", sa.String(length=64), nullable=True),
        sa.Column("user", sa.Text(), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=40), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("response_hash", sa.String(length=64), nullable=True),
        sa.Column("request_bytes", sa.BigInteger(), nullable=False),
        sa.Column("response_bytes", sa.BigInteger(), nullable=False),
        sa.Column("duration_us", sa.BigInteger(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
    ]


def _archive_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _chain(),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.Column("file", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.String(length=40), nullable=False),
    ]


def _log_indexes() -> None:
    op.create_index("ix_message_log_client_seq", "message_log", ["client", "seq"])
    op.create_index("ix_message_log_service_ts", "message_log", ["service", "ts"])
    op.create_index("ix_message_log_ts", "message_log", ["ts"])
    op.create_index(
        "ix_message_log_problems",
        "message_log",
        ["outcome", "seq"],
        sqlite_where=PROBLEMS,
        postgresql_where=PROBLEMS,
    )


def _rekey_postgres(table: str, key: list[str]) -> None:
    conn = op.get_bind()
    op.add_column(table, _chain())
    pk = sa.inspect(conn).get_pk_constraint(table).get("name") or f"{table}_pkey"
    op.drop_constraint(pk, table, type_="primary")
    op.create_primary_key(pk, table, key)


def _rebuild_sqlite(
    table: str,
    columns: list[sa.Column[Any]],
    key: list[str],
    unique: sa.UniqueConstraint | None = None,
    **kw: Any,
) -> None:
    """SQLite cannot change a primary key: the table is made again and the rows copied (all
    but ``chain``: added, it takes its default; removed, it goes)."""
    old = f"{table}__before"
    op.rename_table(table, old)
    extra = [unique] if unique is not None else []
    op.create_table(table, *columns, sa.PrimaryKeyConstraint(*key), *extra, **kw)
    names = ", ".join(f'"{c.name}"' for c in columns if c.name != "chain")
    op.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {old}")
    op.drop_table(old)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    lookups = (("message_log_subject", "subject_key"), ("message_log_request", "request_key"))
    if sqlite:
        _rebuild_sqlite("message_log", _log_columns(), ["chain", "seq"])
        _log_indexes()
        for table, key in lookups:
            _rebuild_sqlite(
                table,
                [
                    sa.Column(key, sa.BigInteger(), autoincrement=False, nullable=False),
                    _chain(),
                    sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
                ],
                [key, "chain", "seq"],
                sqlite_with_rowid=False,
            )
        _rebuild_sqlite(
            "message_log_body",
            [
                _chain(),
                sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
                sa.Column("kid", sa.String(length=80), nullable=False),
                sa.Column("nonce", sa.LargeBinary(), nullable=False),
                sa.Column("request_body", sa.LargeBinary(), nullable=True),
                sa.Column("response_body", sa.LargeBinary(), nullable=True),
            ],
            ["chain", "seq"],
        )
    else:
        _rekey_postgres("message_log", ["chain", "seq"])
        for table, key in lookups:
            _rekey_postgres(table, [key, "chain", "seq"])
        _rekey_postgres("message_log_body", ["chain", "seq"])
    with op.batch_alter_table("message_log_seal", schema=None) as batch_op:
        batch_op.add_column(_chain())
        batch_op.drop_index("ix_message_log_seal_seq")
        batch_op.create_index("ix_message_log_seal_chain_seq", ["chain", "seq"], unique=False)
    archive_columns = _archive_columns()
    unique = sa.UniqueConstraint("chain", "first_seq", name="uq_message_log_archive_chain_seq")
    if sqlite:
        _rebuild_sqlite("message_log_archive", archive_columns, ["id"], unique=unique)
    else:
        op.add_column("message_log_archive", _chain())
        for uq in sa.inspect(op.get_bind()).get_unique_constraints("message_log_archive"):
            op.drop_constraint(str(uq["name"]), "message_log_archive", type_="unique")
        op.create_unique_constraint(
            "uq_message_log_archive_chain_seq", "message_log_archive", ["chain", "first_seq"]
        )
    op.create_table(
        "message_log_chain",
        sa.Column("chain", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("chain"),
    )
    op.create_table(
        "message_log_checkpoint",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ts", sa.String(length=32), nullable=False),
        sa.Column("heads", sa.Text(), nullable=False),
        sa.Column("kid", sa.String(length=80), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    conn = op.get_bind()
    had_log = conn.execute(
        sa.text(
            "SELECT EXISTS (SELECT 1 FROM message_log) OR EXISTS (SELECT 1 FROM message_log_archive)"
        )
    ).scalar()
    if had_log:  # the records so far form the unnamed chain
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        conn.execute(
            sa.text("INSERT INTO message_log_chain (chain, created_at) VALUES ('', :now)"),
            {"now": now},
        )


def _unkey_postgres(table: str, key: list[str]) -> None:
    pk = sa.inspect(op.get_bind()).get_pk_constraint(table).get("name") or f"{table}_pkey"
    op.drop_constraint(pk, table, type_="primary")
    op.drop_column(table, "chain")
    op.create_primary_key(pk, table, key)


def downgrade() -> None:
    """Back to one chain: only while every record is in the unnamed chain."""
    conn = op.get_bind()
    named = conn.execute(
        sa.text(
            "SELECT EXISTS (SELECT 1 FROM message_log WHERE chain <> '')"
            " OR EXISTS (SELECT 1 FROM message_log_archive WHERE chain <> '')"
        )
    ).scalar()
    if named:
        raise RuntimeError("the log has named chains: it cannot be made one chain again")
    op.drop_table("message_log_checkpoint")
    op.drop_table("message_log_chain")
    sqlite = conn.dialect.name == "sqlite"
    lookups = (("message_log_subject", "subject_key"), ("message_log_request", "request_key"))
    conn.execute(sa.text("DELETE FROM message_log_seal WHERE chain <> ''"))
    with op.batch_alter_table("message_log_seal", schema=None) as batch_op:
        batch_op.drop_index("ix_message_log_seal_chain_seq")
        batch_op.drop_column("chain")
        batch_op.create_index("ix_message_log_seal_seq", ["seq"], unique=False)
    if not sqlite:
        _unkey_postgres("message_log", ["seq"])
        for table, key in lookups:
            _unkey_postgres(table, [key, "seq"])
        _unkey_postgres("message_log_body", ["seq"])
        op.drop_constraint("uq_message_log_archive_chain_seq", "message_log_archive")
        op.drop_column("message_log_archive", "chain")
        op.create_unique_constraint(None, "message_log_archive", ["first_seq"])
        return
    columns = [c for c in _log_columns() if c.name != "chain"]
    _rebuild_sqlite("message_log", columns, ["seq"])
    _log_indexes()
    for table, key in lookups:
        _rebuild_sqlite(
            table,
            [
                sa.Column(key, sa.BigInteger(), autoincrement=False, nullable=False),
                sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
            ],
            [key, "seq"],
            sqlite_with_rowid=False,
        )
    _rebuild_sqlite(
        "message_log_body",
        [
            sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column("kid", sa.String(length=80), nullable=False),
            sa.Column("nonce", sa.LargeBinary(), nullable=False),
            sa.Column("request_body", sa.LargeBinary(), nullable=True),
            sa.Column("response_body", sa.LargeBinary(), nullable=True),
        ],
        ["seq"],
    )
    _rebuild_sqlite(
        "message_log_archive",
        [c for c in _archive_columns() if c.name != "chain"],
        ["id"],
        unique=sa.UniqueConstraint("first_seq"),
    )
