"""message-log indexes for search on millions of records

Newest-first search by client walks (client, seq) instead of sorting a client's whole
history; a time range uses (ts); failures are found through a partial index on the rare
outcomes other than "ok", which ordinary traffic does not pay for.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

PROBLEMS = sa.text("outcome <> 'ok'")


def upgrade() -> None:
    with op.batch_alter_table("message_log", schema=None) as batch_op:
        batch_op.drop_index("ix_message_log_client_ts")
        batch_op.create_index("ix_message_log_client_seq", ["client", "seq"], unique=False)
        batch_op.create_index("ix_message_log_ts", ["ts"], unique=False)
    op.create_index(
        "ix_message_log_problems",
        "message_log",
        ["outcome", "seq"],
        unique=False,
        sqlite_where=PROBLEMS,
        postgresql_where=PROBLEMS,
    )


def downgrade() -> None:
    op.drop_index("ix_message_log_problems", table_name="message_log")
    with op.batch_alter_table("message_log", schema=None) as batch_op:
        batch_op.drop_index("ix_message_log_ts")
        batch_op.drop_index("ix_message_log_client_seq")
        batch_op.create_index("ix_message_log_client_ts", ["client", "ts"], unique=False)
