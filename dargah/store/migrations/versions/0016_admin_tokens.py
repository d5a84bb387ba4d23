"""admin API tokens become named and several, each revocable

``admin_tokens`` holds one row per token (its name, a hash of it, who made it and when, when
it was revoked and last used). The instance's single token (``instance_meta.admin_token``)
becomes the token named ``operator``, so whoever holds it keeps working.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_tokens",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("token_hash", sa.String(80), nullable=False, unique=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("revoked_at", sa.String(32)),
        sa.Column("last_used_at", sa.String(32)),
    )
    conn = op.get_bind()
    rows = conn.execute(
        sa.text("SELECT key, value FROM instance_meta WHERE key IN ('admin_token', 'created_at')")
    ).all()
    meta: dict[str, str] = {str(key): str(value) for key, value in rows}
    if "admin_token" in meta:
        conn.execute(
            sa.text(
                "INSERT INTO admin_tokens (name, token_hash, created_at, created_by) "
                "VALUES ('operator', :hash, :at, 'system')"
            ),
            {"hash": meta["admin_token"], "at": meta.get("created_at") or ""},
        )
        conn.execute(sa.text("DELETE FROM instance_meta WHERE key = 'admin_token'"))


def downgrade() -> None:
    conn = op.get_bind()
    newest = conn.execute(
        sa.text(
            "SELECT token_hash FROM admin_tokens WHERE revoked_at IS NULL "
            "ORDER BY (name = 'operator') DESC, created_at DESC"
        )
    ).first()
    if newest is not None:
        conn.execute(
            sa.text("INSERT INTO instance_meta (key, value) VALUES ('admin_token', :hash)"),
            {"hash": newest[0]},
        )
    op.drop_table("admin_tokens")
