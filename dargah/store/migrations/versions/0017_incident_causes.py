"""incidents per cause, their outages and alerts; service objectives and their roll-up

Incidents get the cause they are opened for (a provider host), the services it takes down,
a Persian summary, when the failure started and the incident was last (re)opened, and a
revision that keys each alert. ``incident_outages`` hold the spans of downtime (for daily
uptime), ``incident_alerts`` the alerts to send, each once. ``service_objectives`` hold the
objectives set per bus service; ``slo_buckets`` the forwarded calls per service and 5
minutes, rolled up behind the message log up to ``slo_cursor``. Incidents still open
(opened per service by the old monitor) are resolved, with a note on their timeline.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None
CLOSED = (
    "بسته شد هنگام ارتقا: رخدادها اکنون برای هر میزبان ارائه‌دهنده و پس از خرابی پایدار گشوده "
    "می‌شوند (closed by the upgrade: incidents are now opened per provider host, once a failure "
    "persists)"
)


def upgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cause", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("services", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("summary_fa", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("started_at", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("failing_since", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_index(batch_op.f("ix_incidents_cause"), ["cause"], unique=False)
    # Incidents still open were opened per service, by one failed probe: close them, so that
    # the new monitor opens one per failing host, if anything still fails.
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    conn = op.get_bind()
    still_open = [
        r[0] for r in conn.execute(sa.text("SELECT id FROM incidents WHERE state = 'open'"))
    ]
    for iid in still_open:
        conn.execute(
            sa.text(
                "UPDATE incidents SET state = 'resolved', open_key = NULL, resolved_at = :now, "
                "resolution = :why WHERE id = :id"
            ),
            {"now": now, "why": CLOSED, "id": iid},
        )
        conn.execute(
            sa.text(
                "INSERT INTO incident_events (incident_id, ts, actor, kind, text) "
                "VALUES (:id, :now, 'upgrade', 'resolved', :why)"
            ),
            {"now": now, "why": CLOSED, "id": iid},
        )
    op.create_table(
        "incident_outages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.String(length=32), nullable=False),
        sa.Column("ended_at", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("incident_outages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_incident_outages_incident_id"), ["incident_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_incident_outages_started_at"), ["started_at"], unique=False
        )
    op.create_table(
        "incident_alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.Column("claimed_at", sa.String(length=32), nullable=True),
        sa.Column("sent_at", sa.String(length=32), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("incident_id", "kind", "revision"),
    )
    with op.batch_alter_table("incident_alerts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_incident_alerts_incident_id"), ["incident_id"], unique=False
        )
    op.create_table(
        "service_objectives",
        sa.Column("service_id", sa.String(length=200), nullable=False),
        sa.Column("availability", sa.Float(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("latency_percent", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.String(length=32), nullable=False),
        sa.Column("updated_by", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("service_id"),
    )
    op.create_table(
        "slo_buckets",
        sa.Column("service_id", sa.String(length=200), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("failed", sa.BigInteger(), nullable=False),
        sa.Column("slow", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("service_id", "bucket"),
    )
    op.create_index("ix_slo_buckets_bucket", "slo_buckets", ["bucket"], unique=False)
    op.create_table(
        "slo_cursor",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("slo_cursor")
    op.drop_index("ix_slo_buckets_bucket", table_name="slo_buckets")
    op.drop_table("slo_buckets")
    op.drop_table("service_objectives")
    with op.batch_alter_table("incident_alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_alerts_incident_id"))
    op.drop_table("incident_alerts")
    with op.batch_alter_table("incident_outages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_outages_started_at"))
        batch_op.drop_index(batch_op.f("ix_incident_outages_incident_id"))
    op.drop_table("incident_outages")
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+): a batch would copy the table, which its
    # events' foreign key forbids once incidents have timelines.
    op.drop_index(op.f("ix_incidents_cause"), table_name="incidents")
    for name in ("revision", "failing_since", "started_at", "summary_fa", "services", "cause"):
        op.drop_column("incidents", name)
