"""sign-in attempts by client address, shared by every process of an instance

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sign_in_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("realm", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_sign_in_attempts_source", "sign_in_attempts", ["realm", "source", "at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_sign_in_attempts_source", table_name="sign_in_attempts")
    op.drop_table("sign_in_attempts")
