"""The message log's tables: the chained records, their index by subject, seals, encrypted
bodies and archives (protocol §6). Part of :data:`dargah.store.tables.metadata`.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from dargah.store.tables import metadata

# One chain per writer (protocol §6, "Several chains"): ``chain`` names it, ``seq`` counts within
# it. The unnamed chain ('') is the single chain of an instance that keeps one.
CHAIN = String(32)

message_log: Table = Table(
    "message_log",
    metadata,
    Column("chain", CHAIN, primary_key=True, server_default=text("''"), autoincrement=False),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts", String(32), nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("client", String(120)),
    Column("service", String(200)),
    Column("method", String(16)),
    Column("path", Text),
    Column("query_hash", String(64)),
    Column("purpose", Text),
    Column("subject_ref", String(64)),
    Column("user", Text),
    Column("status", Integer, nullable=False),
    Column("outcome", String(40), nullable=False),
    Column("request_hash", String(64)),
    Column("response_hash", String(64)),
    Column("request_bytes", BigInteger, nullable=False),
    Column("response_bytes", BigInteger, nullable=False),
    Column("duration_us", BigInteger, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    # Search (newest first, by seq) and status (a service's last minutes) are served by these;
    # failures have an index of their own that the "ok" majority does not pay for. The indexes by
    # subject and by request id are tables of their own, written behind the log (below).
    Index("ix_message_log_client_seq", "client", "seq"),
    Index("ix_message_log_service_ts", "service", "ts"),
    Index("ix_message_log_ts", "ts"),
    Index(
        "ix_message_log_problems",
        "outcome",
        "seq",
        sqlite_where=text("outcome <> 'ok'"),
        postgresql_where=text("outcome <> 'ok'"),
    ),
)


# Records by subject ("who used my data") and by request id, written in batches behind the log
# by its writers (dargah.bus.log.lookup) up to the ``lookup`` mark of message_log_indexed; the
# records after that mark are found in message_log itself. Subject refs are HMACs and request ids
# mostly random UUIDs, so each record's key lands at a random place: written with the record,
# such an index cost every call a random page. A key is a 64-bit hash of the value
# (dargah.bus.log.lookup.lookup_key); a search compares the record's own value too.
def _lookup_table(name: str, key: str) -> Table:
    return Table(
        name,
        metadata,
        Column(key, BigInteger, primary_key=True, autoincrement=False),
        Column("chain", CHAIN, primary_key=True, server_default=text("''"), autoincrement=False),
        Column("seq", BigInteger, primary_key=True, autoincrement=False),
        sqlite_with_rowid=False,
    )


message_log_subject: Table = _lookup_table("message_log_subject", "subject_key")
message_log_request: Table = _lookup_table("message_log_request", "request_key")

message_log_indexed: Table = Table(
    "message_log_indexed",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
)

message_log_seal: Table = Table(
    "message_log_seal",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("chain", CHAIN, nullable=False, server_default=text("''")),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("ts", String(32), nullable=False),
    Column("kid", String(80), nullable=False),
    Column("signature", Text, nullable=False),
    Index("ix_message_log_seal_chain_seq", "chain", "seq"),
)

# Every chain the instance has had (a writer adds its own when it starts), so that a chain
# whose records are all gone is still known. Heads are read from the chains themselves.
message_log_chain: Table = Table(
    "message_log_chain",
    metadata,
    Column("chain", CHAIN, primary_key=True),
    Column("created_at", String(32), nullable=False),
)

# Signed instance checkpoints: the head of every chain at ``ts`` (protocol §6).
message_log_checkpoint: Table = Table(
    "message_log_checkpoint",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", String(32), nullable=False),
    Column("heads", Text, nullable=False),  # JSON: [{chain, seq, hash}, ...] in chain order
    Column("kid", String(80), nullable=False),
    Column("signature", Text, nullable=False),
)

# Encrypted bodies for services that opt in (AES-256-GCM).
message_log_body: Table = Table(
    "message_log_body",
    metadata,
    Column("chain", CHAIN, primary_key=True, server_default=text("''"), autoincrement=False),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("kid", String(80), nullable=False),
    Column("nonce", LargeBinary, nullable=False),
    Column("request_body", LargeBinary),
    Column("response_body", LargeBinary),
)

# Where each archive file ends; the live log continues after it.
message_log_archive: Table = Table(
    "message_log_archive",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("chain", CHAIN, nullable=False, server_default=text("''")),
    Column("first_seq", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("last_hash", String(64), nullable=False),
    Column("file", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("created_at", String(40), nullable=False),
    UniqueConstraint("chain", "first_seq", name="uq_message_log_archive_chain_seq"),
)
