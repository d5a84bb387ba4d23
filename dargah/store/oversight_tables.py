"""Tables of oversight's own records: what providers report of calls that bypassed the bus.

Part of :data:`dargah.store.tables.metadata`.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, String, Table, Text

from dargah.store.tables import metadata

# A provider's report that its bus service received calls without a valid GSB-Assertion:
# something reached it outside the bus (a direct connection).
unasserted_calls = Table(
    "unasserted_calls",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service_id", String(200), nullable=False, index=True),
    Column("member_id", String(64), nullable=False, index=True),
    Column("calls", BigInteger, nullable=False),
    Column("first_seen", String(40)),
    Column("last_seen", String(40)),
    Column("source", Text),
    Column("note", Text),
    Column("reported_by", Text, nullable=False),
    Column("reported_at", String(32), nullable=False),
)
