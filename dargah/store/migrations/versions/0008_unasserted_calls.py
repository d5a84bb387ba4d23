"""oversight: providers' reports of calls without a valid GSB-Assertion

Revision ID: 0008
Revises: 0006
Create Date: 2026-11-28 02:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "unasserted_calls",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("service_id", sa.String(length=200), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("first_seen", sa.String(length=40), nullable=True),
        sa.Column("last_seen", sa.String(length=40), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("reported_by", sa.Text(), nullable=False),
        sa.Column("reported_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("unasserted_calls", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_unasserted_calls_member_id"), ["member_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_unasserted_calls_service_id"), ["service_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("unasserted_calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_unasserted_calls_service_id"))
        batch_op.drop_index(batch_op.f("ix_unasserted_calls_member_id"))
    op.drop_table("unasserted_calls")
