"""Tables of the people-facing parts: web sessions, sign-in codes, the portal's applications,
consents, ratings and complaints, console accounts and oversight's daily snapshots.

National codes are kept here in clear because these rows are the citizen's own file at the
portal (the message log keeps only ``subject_ref``). Part of :data:`dargah.store.tables.metadata`.
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint

from dargah.store.tables import metadata

# A signed-in browser: the portal's citizens (realm "portal", principal = national code) and
# the console's users (realm "console", principal = username). Only the token's hash is kept.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("realm", String(16), nullable=False),
    Column("principal", String(120), nullable=False, index=True),
    Column("csrf", String(64), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("expires_at", String(32), nullable=False),
)

# One-time sign-in codes sent by SMS; only the code's hash is kept.
otp_codes = Table(
    "otp_codes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("national_code", String(10), nullable=False, index=True),
    Column("mobile", String(16), nullable=False),
    Column("code_hash", String(100), nullable=False),  # "salt$sha256"
    Column("created_at", String(32), nullable=False),
    Column("expires_at", String(32), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("used_at", String(32)),
)

# A failed sign-in (console password, portal code) or a code sent, by client address: the
# limits per source that every process of an instance shares (dargah.web.attempts).
sign_in_attempts = Table(
    "sign_in_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("realm", String(16), nullable=False),
    Column("source", String(64), nullable=False),
    Column("at", String(32), nullable=False),
    Index("ix_sign_in_attempts_source", "realm", "source", "at"),
)

# An application for a public service, made on the portal or opened by an agency by itself
# (channel "proactive"). `agency_ref` is the agency's own id for it at `submit_to`.
applications = Table(
    "applications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tracking_code", String(20), nullable=False, unique=True),
    Column("national_code", String(10), nullable=False, index=True),
    Column("service_id", String(11), nullable=False, index=True),
    Column("submit_to", String(200)),
    Column("agency_ref", String(120)),
    Column("channel", String(16), nullable=False),
    Column("status", String(32), nullable=False),
    Column("status_fa", Text, nullable=False),
    Column("data", Text, nullable=False),
    Column("sources", Text, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("updated_at", String(32), nullable=False),
    Column("completed_at", String(32)),
    UniqueConstraint("submit_to", "agency_ref"),
)

# The status timeline of an application, oldest first.
application_events = Table(
    "application_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("application_id", Integer, ForeignKey("applications.id"), nullable=False, index=True),
    Column("ts", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("status_fa", Text, nullable=False),
    Column("note", Text),
)

# What a citizen agreed the portal may fetch, from which bus service, for which purpose.
consents = Table(
    "consents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("national_code", String(10), nullable=False, index=True),
    Column("service_id", String(11), nullable=False),
    Column("purpose", String(64), nullable=False),
    Column("sources", Text, nullable=False),
    Column("given_at", String(32), nullable=False),
)

# A five-point rating of a completed application.
ratings = Table(
    "ratings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("application_id", Integer, ForeignKey("applications.id"), nullable=False, unique=True),
    Column("national_code", String(10), nullable=False),
    Column("service_id", String(11), nullable=False, index=True),
    Column("score", Integer, nullable=False),
    Column("comment", Text),
    Column("created_at", String(32), nullable=False),
)

# A complaint about a public service, routed to its agency (member).
complaints = Table(
    "complaints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tracking_code", String(20), nullable=False, unique=True),
    Column("national_code", String(10), nullable=False, index=True),
    Column("service_id", String(11), nullable=False, index=True),
    Column("member_id", String(64), nullable=False, index=True),
    Column("application_id", Integer, ForeignKey("applications.id")),
    Column("text", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("answer", Text),
    Column("created_at", String(32), nullable=False),
    Column("updated_at", String(32), nullable=False),
)

# Console accounts: role "operator", "agency-admin" (of `member_id`) or "auditor".
console_users = Table(
    "console_users",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("role", String(16), nullable=False),
    Column("member_id", String(64), ForeignKey("members.id")),
    Column("display_name", Text),
    Column("active", Integer, nullable=False),
    Column("created_at", String(32), nullable=False),
)

# Oversight's measurements, one row a day per scope ("nation" or a member id), as JSON.
oversight_snapshots = Table(
    "oversight_snapshots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("day", String(10), nullable=False),
    Column("scope", String(64), nullable=False),
    Column("data", Text, nullable=False),
    Column("taken_at", String(32), nullable=False),
    UniqueConstraint("day", "scope"),
)

Index("ix_applications_status", applications.c.status)

# What the portal told a citizen without being asked (a status change, a service an agency
# opened for them, a source failing for a service they are using): shown on their pages and
# sent by SMS. ``key`` names the news itself, so each is sent once however many processes
# notice it (unique per citizen).
notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("national_code", String(10), nullable=False),
    Column("key", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("tracking_code", String(20)),
    Column("text", Text, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("read_at", String(32)),
    UniqueConstraint("national_code", "key", name="uq_notifications_key"),
)
