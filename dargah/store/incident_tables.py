"""Incidents per cause, their outages, alerts and timeline, and services' objectives with the
roll-up of calls they are measured on (the monitor, the status pages). Part of
:data:`dargah.store.tables.metadata`.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from dargah.store.tables import metadata

# Incidents the monitor opens when a cause (a provider host) keeps failing. `open_key` holds
# the cause while open (unique), so that one incident is open per cause whatever the number
# of processes; `services` (JSON list) are the bus services it takes down, `service_id` the
# first of them. `revision` counts its changes (open, update, reopen, resolve): each alert
# is keyed by it. `failing_since` is when it was last (re)opened.
incidents: Table = Table(
    "incidents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service_id", String(200), nullable=False, index=True),
    Column("provider", String(120), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("open_key", String(200), unique=True),
    Column("opened_at", String(32), nullable=False),
    Column("recovered_at", String(32)),
    Column("resolved_at", String(32)),
    Column("owner", Text),
    Column("summary", Text, nullable=False),
    Column("resolution", Text),
    Column("cause", String(200), index=True),
    Column("services", Text),
    Column("summary_fa", Text),
    Column("started_at", String(32)),
    Column("failing_since", String(32)),
    Column("revision", Integer, nullable=False, server_default="0"),
)

# The spans of time an incident's services were down (an incident reopened has several):
# the public status page's daily uptime is computed from them.
incident_outages: Table = Table(
    "incident_outages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", Integer, ForeignKey("incidents.id"), nullable=False, index=True),
    Column("started_at", String(32), nullable=False, index=True),
    Column("ended_at", String(32)),
)

# Alerts to send, one per incident change (kind firing or resolved, at a revision): written in
# the transaction that makes the change, so each exists once; a sender claims, posts, marks it.
incident_alerts: Table = Table(
    "incident_alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", Integer, ForeignKey("incidents.id"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("claimed_at", String(32)),
    Column("sent_at", String(32)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("outcome", Text),
    UniqueConstraint("incident_id", "kind", "revision"),
)

# Objectives of a bus service, where set (otherwise the settings' defaults hold): the share of
# forwarded calls that must not fail on the provider's side, and of calls under latency_ms.
service_objectives: Table = Table(
    "service_objectives",
    metadata,
    Column("service_id", String(200), primary_key=True),
    Column("availability", Float, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("latency_percent", Float, nullable=False),
    Column("updated_at", String(32), nullable=False),
    Column("updated_by", Text, nullable=False),
)

# Forwarded calls per service and 5-minute bucket (epoch seconds of its start), rolled up from
# the message log behind it; `slo_cursor` holds the last log seq counted.
slo_buckets: Table = Table(
    "slo_buckets",
    metadata,
    Column("service_id", String(200), primary_key=True),
    Column("bucket", BigInteger, primary_key=True),
    Column("calls", BigInteger, nullable=False),
    Column("failed", BigInteger, nullable=False),
    Column("slow", BigInteger, nullable=False),
    Index("ix_slo_buckets_bucket", "bucket"),
)

slo_cursor: Table = Table(
    "slo_cursor",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("seq", BigInteger, nullable=False),
)

incident_events: Table = Table(
    "incident_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", Integer, ForeignKey("incidents.id"), nullable=False, index=True),
    Column("ts", String(32), nullable=False),
    Column("actor", Text, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("text", Text, nullable=False),
)
