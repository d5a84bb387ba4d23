"""The relational schema, shared by SQLite and PostgreSQL (SQLAlchemy Core).

Migrations under ``store/migrations`` create exactly this; a test compares them.
Lists and documents are stored as JSON text so that both backends read them alike.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# Key/value facts about the instance: its code, the admin token's hash, the log key id.
instance_meta = Table(
    "instance_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# Admin API tokens, one per operator or automation (dargah.registry.admin_tokens): only a hash
# of each is kept. A revoked token's row stays, listed as revoked, until its name is reused.
admin_tokens = Table(
    "admin_tokens",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("token_hash", String(80), nullable=False, unique=True),
    Column("created_at", String(32), nullable=False),
    Column("created_by", Text, nullable=False),
    Column("revoked_at", String(32)),
    Column("last_used_at", String(32)),
)

# Bumped by every registry change; running processes poll it (the change feed).
registry_version = Table(
    "registry_version",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False),
)

members = Table(
    "members",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("member_class", String(8), nullable=False),
    Column("legal_id", String(11), nullable=False),
    Column("name", Text, nullable=False),
    Column("name_en", Text),
    Column("status", String(16), nullable=False),
    Column("created_at", String(40), nullable=False),
    # From the catalogue (catalogue.md, AGENCY): the ministry or parent body, and the website.
    Column("parent_legal_id", String(11)),
    Column("website", Text),
)

subsystems = Table(
    "subsystems",
    metadata,
    Column("id", String(120), primary_key=True),
    Column("member_id", String(64), ForeignKey("members.id"), nullable=False, index=True),
    Column("name", Text),
    Column("status", String(16), nullable=False),
    Column("secret_hash", Text),
    Column("created_at", String(40), nullable=False),
)

subsystem_keys = Table(
    "subsystem_keys",
    metadata,
    Column("kid", String(80), primary_key=True),
    Column("subsystem_id", String(120), ForeignKey("subsystems.id"), nullable=False, index=True),
    Column("alg", String(16), nullable=False),
    Column("jwk", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("revoked_at", String(40)),
)

subsystem_certs = Table(
    "subsystem_certs",
    metadata,
    # RFC 8705 x5t#S256: base64url SHA-256 of the certificate's DER.
    Column("thumbprint", String(64), primary_key=True),
    Column("subsystem_id", String(120), ForeignKey("subsystems.id"), nullable=False, index=True),
    Column("pem", Text),  # absent when only the thumbprint was registered
    Column("status", String(16), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("revoked_at", String(40)),
)

services = Table(
    "services",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("subsystem_id", String(120), ForeignKey("subsystems.id"), nullable=False, index=True),
    Column("title", Text, nullable=False),
    Column("base_url", Text, nullable=False),
    Column("openapi", Text),
    Column("personal_data", Boolean, nullable=False),
    Column("timeout_s", Float, nullable=False),
    Column("max_body", BigInteger, nullable=False),
    Column("maintenance", Boolean, nullable=False),
    Column("store_bodies", Boolean, nullable=False),
    Column("supplies", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", String(40), nullable=False),
)

grants = Table(
    "grants",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client_id", String(120), ForeignKey("subsystems.id"), nullable=False),
    Column("service_id", String(200), nullable=False),
    Column("purposes", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("requested_by", Text, nullable=False),
    Column("decided_by", Text),
    Column("reason", Text),
    Column("created_at", String(40), nullable=False),
    Column("decided_at", String(40)),
    Index("ix_grants_client_service", "client_id", "service_id"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", String(40), nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", String(80), nullable=False),
    Column("target", Text, nullable=False),
    Column("before", Text),
    Column("after", Text),
    Index("ix_audit_target", "target"),
)

# Client-assertion ids already used at the token endpoint (replay protection).
used_jti = Table(
    "used_jti",
    metadata,
    Column("jti", String(255), primary_key=True),
    Column("client_id", String(120), nullable=False),
    Column("exp", BigInteger, nullable=False, index=True),
)

# The bus's own signing keys: GSB-Assertion, log seals; and the token MAC key.
bus_keys = Table(
    "bus_keys",
    metadata,
    Column("kid", String(80), primary_key=True),
    Column("use", String(16), nullable=False),
    Column("alg", String(16), nullable=False),
    Column("private_pem", Text, nullable=False),
    Column("public_jwk", Text),
    Column("status", String(16), nullable=False),
    Column("created_at", String(40), nullable=False),
)

# Per-client rate limits: a client-wide one (service_id '') and per-service ones.
quotas = Table(
    "quotas",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client_id", String(120), nullable=False),
    Column("service_id", String(200), nullable=False),
    Column("per_second", Float, nullable=False),
    Column("burst", Float, nullable=False),
    Column("updated_at", String(40), nullable=False),
    UniqueConstraint("client_id", "service_id"),
)


# -- The catalogue of public services (catalogue.md) ------------------------------------------

# One row per public service: every CARD field. Lists and objects are JSON text;
# steps.* are nullable booleans (null = not applicable or not stated).
public_services = Table(
    "public_services",
    metadata,
    Column("service_id", String(11), primary_key=True),
    Column("member_id", String(64), ForeignKey("members.id"), nullable=False, index=True),
    Column("agency_legal_id", String(11), nullable=False),
    Column("title_fa", Text),
    Column("title_en", Text),
    Column("description_fa", Text),
    Column("description_en", Text),
    Column("recipients", Text),
    Column("cluster", Text),
    Column("life_events", Text),
    Column("channels", Text),
    Column("steps_sign_in_online", Boolean),
    Column("steps_apply_online", Boolean),
    Column("steps_pay_online", Boolean),
    Column("steps_decision_online", Boolean),
    Column("steps_issue_online", Boolean),
    Column("steps_track_online", Boolean),
    Column("in_person_visits", Integer),
    Column("paper_required", Boolean),
    Column("documents", Text),
    Column("data_sources", Text),
    Column("proactive_topics", Text),
    Column("form", Text),
    Column("submit_to", String(200)),
    Column("fee_rials", BigInteger),
    Column("time_limit_days", Integer),
    Column("declared_level", Integer),
    Column("status", String(16), nullable=False),
    Column("url", Text),
    Column("extra", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
)

# The agency's own figures for one service and period (catalogue.md, REPORT).
public_service_reports = Table(
    "public_service_reports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service_id", String(11), ForeignKey("public_services.service_id"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("period", String(64), nullable=False),
    Column("jalali_year", Integer),
    Column("jalali_quarter", Integer),
    Column("applications_online", BigInteger),
    Column("applications_in_person", BigInteger),
    Column("applications_other", BigInteger),
    Column("completed", BigInteger),
    Column("completed_online", BigInteger),
    Column("started", BigInteger),
    Column("cost_total_rials", BigInteger),
    Column("cost_per_transaction_rials", BigInteger),
    Column("satisfaction_pct", Float),
    Column("extra", Text, nullable=False),
    UniqueConstraint("service_id", "period"),
)

# What an imported AGENCY carried beyond the member's own columns (unknown fields, kept).
catalogue_agencies = Table(
    "catalogue_agencies",
    metadata,
    Column("member_id", String(64), ForeignKey("members.id"), primary_key=True),
    Column("extra", Text, nullable=False),
    Column("updated_at", String(40), nullable=False),
)

# Events (protocol §7): topics owned by a provider subsystem; grants on topics live in
# `grants` with the topic id as the service id.
topics = Table(
    "topics",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("subsystem_id", String(120), ForeignKey("subsystems.id"), nullable=False, index=True),
    Column("title", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", String(40), nullable=False),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("client_id", String(120), ForeignKey("subsystems.id"), nullable=False, index=True),
    Column("topic_id", String(200), ForeignKey("topics.id"), nullable=False, index=True),
    Column("mode", String(8), nullable=False),
    Column("webhook_url", Text),
    Column("status", String(16), nullable=False),
    Column("created_at", String(40), nullable=False),
)

# Every published event, once (CloudEvents id unique per topic); `seq` orders a topic's events.
events = Table(
    "events",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("topic_id", String(200), nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("body", Text, nullable=False),
    Column("publisher", String(120), nullable=False),
    Column("published_at", String(32), nullable=False),
    UniqueConstraint("topic_id", "event_id"),
    Index("ix_events_topic_seq", "topic_id", "seq"),
)

# One row per (webhook subscription, event): pending → delivered, or dead after the retry window.
deliveries = Table(
    "deliveries",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("subscription_id", String(36), ForeignKey("subscriptions.id"), nullable=False),
    Column("event_seq", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created", Float, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_until", Float),
    Column("last_error", Text),
    Column("delivered_at", String(32)),
    UniqueConstraint("subscription_id", "event_seq"),
    Index("ix_deliveries_due", "status", "next_attempt_at"),
)

# An operator's decision on a pair of public services found alike (service_a < service_b):
# confirmed duplicates or dismissed; never set automatically (catalogue.md, duplicates).
duplicate_decisions = Table(
    "duplicate_decisions",
    metadata,
    Column("service_a", String(11), ForeignKey("public_services.service_id"), primary_key=True),
    Column("service_b", String(11), ForeignKey("public_services.service_id"), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("decided_by", String(200), nullable=False),
    Column("decided_at", String(40), nullable=False),
    Column("reason", Text),
)

# Messages for people (e-mail, SMS): alerts now, the portal's one-time codes later.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("channel", String(8), nullable=False),
    Column("recipient", Text, nullable=False),
    Column("subject", Text),
    Column("text", Text, nullable=False),
    Column("code", String(16)),
    Column("sent_at", String(32), nullable=False),
)


# The people-facing parts' tables and oversight's own live in their modules, on this metadata.
from dargah.store import incident_tables as _incident_tables  # noqa: E402
from dargah.store import log_tables as _log_tables  # noqa: E402
from dargah.store import oversight_tables as _oversight_tables  # noqa: E402,F401
from dargah.store import people_tables as _people_tables  # noqa: E402,F401

# The message log's tables, defined in log_tables, importable from here as before.
message_log: Table = _log_tables.message_log
message_log_subject: Table = _log_tables.message_log_subject
message_log_request: Table = _log_tables.message_log_request
message_log_indexed: Table = _log_tables.message_log_indexed
message_log_seal: Table = _log_tables.message_log_seal
message_log_body: Table = _log_tables.message_log_body
message_log_archive: Table = _log_tables.message_log_archive
message_log_chain: Table = _log_tables.message_log_chain
message_log_checkpoint: Table = _log_tables.message_log_checkpoint

# Incidents, their outages, alerts and events, and services' objectives (incident_tables).
incidents: Table = _incident_tables.incidents
incident_outages: Table = _incident_tables.incident_outages
incident_alerts: Table = _incident_tables.incident_alerts
service_objectives: Table = _incident_tables.service_objectives
slo_buckets: Table = _incident_tables.slo_buckets
slo_cursor: Table = _incident_tables.slo_cursor
incident_events: Table = _incident_tables.incident_events
