"""the message log's index by subject becomes a table written behind the log

``message_log_subject`` holds (a 64-bit hash of subject_ref, seq) for every record with a subject up to
the ``subject`` mark of ``message_log_indexed``; the log's writers add to it in batches.
The index on ``message_log.subject_ref`` goes: it cost every call a random page.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_log_subject",
        sa.Column("subject_key", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("subject_key", "seq"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "message_log_indexed",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    # The records already logged are indexed here, in batches, so that searches by subject
    # stay fast from the first start on.
    conn = op.get_bind()
    after = 0
    while True:
        rows = conn.execute(
            sa.text(
                "SELECT subject_ref, seq FROM message_log WHERE seq > :after"
                " AND subject_ref IS NOT NULL ORDER BY seq LIMIT 50000"
            ),
            {"after": after},
        ).all()
        if not rows:
            break
        conn.execute(
            sa.text("INSERT INTO message_log_subject (subject_key, seq) VALUES (:k, :s)"),
            [{"k": k, "s": s} for k, s in keyed(rows)],
        )
        after = rows[-1][1]
    top = conn.execute(sa.text("SELECT COALESCE(MAX(seq), 0) FROM message_log")).scalar()
    conn.execute(
        sa.text("INSERT INTO message_log_indexed (name, last_seq) VALUES ('subject', :top)"),
        {"top": int(top or 0)},
    )
    op.drop_index("ix_message_log_subject_ref", table_name="message_log")


def keyed(rows: Sequence[Any]) -> list[tuple[int, int]]:
    """(subject key, seq) of each row, as dargah.bus.log.subjects computes it (kept here so
    that the migration does not change with the code)."""
    out = []
    for ref, seq in rows:
        digest = hashlib.blake2b(str(ref).encode(), digest_size=8).digest()
        out.append((int.from_bytes(digest, "big", signed=True), int(seq)))
    return out


def downgrade() -> None:
    op.create_index("ix_message_log_subject_ref", "message_log", ["subject_ref"], unique=False)
    op.drop_table("message_log_indexed")
    op.drop_table("message_log_subject")
