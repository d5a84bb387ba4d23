"""subsystems may register client certificates for mutual TLS (RFC 8705)

``subsystem_certs`` holds each certificate's ``x5t#S256`` thumbprint, the
subsystem it belongs to, and the certificate itself when it was registered
whole (a self-signed certificate: the bus must trust it for the handshake).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subsystem_certs",
        sa.Column("thumbprint", sa.String(64), primary_key=True),
        sa.Column("subsystem_id", sa.String(120), sa.ForeignKey("subsystems.id"), nullable=False),
        sa.Column("pem", sa.Text()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("revoked_at", sa.String(40)),
    )
    op.create_index("ix_subsystem_certs_subsystem_id", "subsystem_certs", ["subsystem_id"])


def downgrade() -> None:
    op.drop_index("ix_subsystem_certs_subsystem_id", "subsystem_certs")
    op.drop_table("subsystem_certs")
