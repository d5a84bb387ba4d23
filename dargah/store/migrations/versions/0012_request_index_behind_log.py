"""the message log's index by request id becomes a table written behind the log

``message_log_request`` holds (a 64-bit hash of request_id, seq) for every
record up to the mark of ``message_log_indexed``, which now covers both lookup
indexes and is renamed from ``subject`` to ``lookup``; the log's writers add to
both in the same batches. The index on ``message_log.request_id`` goes: request
ids are mostly random UUIDs, so it cost every call a random page.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_log_request",
        sa.Column("request_key", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("request_key", "seq"),
        sqlite_with_rowid=False,
    )
    conn = op.get_bind()
    mark = conn.execute(
        sa.text("SELECT last_seq FROM message_log_indexed WHERE name = 'subject'")
    ).scalar()
    mark = int(mark or 0)
    # The records the subject index already covers get their request index here, in batches;
    # the writers index the rest of both as they go on.
    after = 0
    while True:
        rows = conn.execute(
            sa.text(
                "SELECT request_id, seq FROM message_log WHERE seq > :after AND seq <= :mark"
                " ORDER BY seq LIMIT 50000"
            ),
            {"after": after, "mark": mark},
        ).all()
        if not rows:
            break
        conn.execute(
            sa.text("INSERT INTO message_log_request (request_key, seq) VALUES (:k, :s)"),
            [{"k": k, "s": s} for k, s in keyed(rows)],
        )
        after = rows[-1][1]
    conn.execute(sa.text("DELETE FROM message_log_indexed WHERE name = 'subject'"))
    conn.execute(
        sa.text("INSERT INTO message_log_indexed (name, last_seq) VALUES ('lookup', :mark)"),
        {"mark": mark},
    )
    op.drop_index("ix_message_log_request_id", table_name="message_log")


def keyed(rows: Sequence[Any]) -> list[tuple[int, int]]:
    """(request key, seq) of each row, as dargah.bus.log.lookup computes it (kept here so that
    the migration does not change with the code), sorted."""
    out = []
    for rid, seq in rows:
        digest = hashlib.blake2b(str(rid).encode(), digest_size=8).digest()
        out.append((int.from_bytes(digest, "big", signed=True), int(seq)))
    return sorted(out)


def downgrade() -> None:
    op.create_index("ix_message_log_request_id", "message_log", ["request_id"], unique=False)
    op.execute("UPDATE message_log_indexed SET name = 'subject' WHERE name = 'lookup'")
    op.drop_table("message_log_request")
