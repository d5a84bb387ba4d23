"""The one place that reads the environment.

Everything else receives a :class:`Settings` object. Each setting is declared
once, with its environment variable and help text; ``docs/operators.md``
lists them all and a test fails when one is undocumented.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


def _meta(env: str, help: str) -> dict[str, str]:
    return {"env": env, "help": help}


@dataclass(frozen=True)
class Settings:
    home: Path = field(
        default=Path(".dargah"),
        metadata=_meta("DARGAH_HOME", "Directory of the instance's embedded store and files."),
    )
    database_url: str = field(
        default="",
        metadata=_meta(
            "DARGAH_DATABASE_URL",
            "SQLAlchemy URL of the database (postgresql://...); empty for SQLite in the home.",
        ),
    )
    instance: str = field(
        default="DEV",
        metadata=_meta("DARGAH_INSTANCE", "Instance code for a new home: IR, DEV, TEST, ..."),
    )
    public_url: str = field(
        default="",
        metadata=_meta(
            "DARGAH_PUBLIC_URL",
            "Public base URL of the bus; the token audience is {public_url}/oauth/token. "
            "Defaults to the address the bus serves on.",
        ),
    )
    host: str = field(default="127.0.0.1", metadata=_meta("DARGAH_HOST", "Address to listen on."))
    port: int = field(default=8000, metadata=_meta("DARGAH_PORT", "Port to listen on."))
    workers: int = field(
        default=1, metadata=_meta("DARGAH_WORKERS", "Processes that share the port.")
    )
    tls_cert_file: str = field(
        default="",
        metadata=_meta(
            "DARGAH_TLS_CERT_FILE",
            "PEM certificate chain: `dargah serve` then speaks HTTPS (TLS 1.2/1.3) only. "
            "Reloaded on SIGHUP and when the file changes.",
        ),
    )
    tls_key_file: str = field(
        default="",
        metadata=_meta("DARGAH_TLS_KEY_FILE", "PEM private key of DARGAH_TLS_CERT_FILE."),
    )
    tls_client_ca_file: str = field(
        default="",
        metadata=_meta(
            "DARGAH_TLS_CLIENT_CA_FILE",
            "PEM CAs whose client certificates the bus accepts for mutual TLS (besides the "
            "self-signed system certificates agencies register).",
        ),
    )
    client_cert_header: str = field(
        default="",
        metadata=_meta(
            "DARGAH_CLIENT_CERT_HEADER",
            "Header (RFC 9440, e.g. Client-Cert) carrying the client certificate a TLS-"
            "terminating proxy verified; read only from DARGAH_TRUSTED_PROXIES. Empty: off.",
        ),
    )
    idle_timeout: float = field(
        default=5.0,
        metadata=_meta(
            "DARGAH_IDLE_TIMEOUT", "Seconds a kept-alive connection may wait for a request."
        ),
    )
    header_timeout: float = field(
        default=10.0,
        metadata=_meta(
            "DARGAH_HEADER_TIMEOUT",
            "Seconds a client has to send a request's head (and a TLS handshake); then 408.",
        ),
    )
    body_timeout: float = field(
        default=60.0,
        metadata=_meta(
            "DARGAH_BODY_TIMEOUT",
            "Seconds a client has to send a request's body once its head is in; then 408. "
            "Bus calls are cut sooner, at their service's timeout.",
        ),
    )
    log_durability: str = field(
        default="process",
        metadata=_meta(
            "DARGAH_LOG_DURABILITY",
            "'process': a record survives a crash of the process (SQLite synchronous=NORMAL); "
            "'power': it also survives a power loss (fsync on every group commit).",
        ),
    )
    log_chains: str = field(
        default="auto",
        metadata=_meta(
            "DARGAH_LOG_CHAINS",
            "'single': every bus process writes the one message-log chain, in turns; "
            "'per-process': each bus process writes a chain of its own, {node}-{n}, and none "
            "waits for another; 'auto' (default): single on SQLite, per-process on PostgreSQL.",
        ),
    )
    node_name: str = field(
        default="",
        metadata=_meta(
            "DARGAH_NODE_NAME",
            "This machine's name in the log's chain ids (letters, digits, . _ -, at most 28); "
            "default: the host name, kept in {home}/node-name from the first start on.",
        ),
    )
    seal_every_records: int = field(
        default=1000, metadata=_meta("DARGAH_SEAL_EVERY_RECORDS", "Seal the log every N records.")
    )
    seal_every_seconds: float = field(
        default=1.0, metadata=_meta("DARGAH_SEAL_EVERY_SECONDS", "Seal the log every N seconds.")
    )
    refresh_seconds: float = field(
        default=1.0,
        metadata=_meta(
            "DARGAH_REFRESH_SECONDS",
            "How often a bus process checks the registry for changes (revocations, grants).",
        ),
    )
    token_ttl: int = field(
        default=300, metadata=_meta("DARGAH_TOKEN_TTL", "Access token lifetime, 60-600 s.")
    )
    assertion_ttl: int = field(
        default=60, metadata=_meta("DARGAH_ASSERTION_TTL", "GSB-Assertion lifetime in seconds.")
    )
    breaker_failures: int = field(
        default=5,
        metadata=_meta(
            "DARGAH_BREAKER_FAILURES", "Failures in a row that open a provider's circuit."
        ),
    )
    breaker_open_seconds: float = field(
        default=5.0,
        metadata=_meta("DARGAH_BREAKER_OPEN_SECONDS", "How long an open circuit stays open."),
    )
    provider_connections: int = field(
        default=64,
        metadata=_meta(
            "DARGAH_PROVIDER_CONNECTIONS", "Most connections a bus process opens to one provider."
        ),
    )
    health_interval: float = field(
        default=10.0,
        metadata=_meta(
            "DARGAH_HEALTH_INTERVAL",
            "Seconds between active health probes of every provider (and monitor rounds).",
        ),
    )
    incident_open_probes: int = field(
        default=3,
        metadata=_meta(
            "DARGAH_INCIDENT_OPEN_PROBES",
            "Failed monitor rounds in a row before a provider host's incident opens.",
        ),
    )
    incident_resolve_probes: int = field(
        default=3,
        metadata=_meta(
            "DARGAH_INCIDENT_RESOLVE_PROBES",
            "Good monitor rounds in a row before an open incident resolves by itself.",
        ),
    )
    incident_reopen_seconds: float = field(
        default=3600.0,
        metadata=_meta(
            "DARGAH_INCIDENT_REOPEN_SECONDS",
            "A cause failing again within this time of its resolution reopens the same incident.",
        ),
    )
    monitor_grace_seconds: float = field(
        default=120.0,
        metadata=_meta(
            "DARGAH_MONITOR_GRACE_SECONDS",
            "After a start, no incident for a provider host not yet seen up, for this long.",
        ),
    )
    slo_availability: float = field(
        default=99.5,
        metadata=_meta(
            "DARGAH_SLO_AVAILABILITY",
            "Default availability objective of a bus service, percent of forwarded calls.",
        ),
    )
    slo_latency_ms: float = field(
        default=1000.0,
        metadata=_meta(
            "DARGAH_SLO_LATENCY_MS", "Default latency objective of a bus service, milliseconds."
        ),
    )
    slo_latency_percent: float = field(
        default=95.0,
        metadata=_meta(
            "DARGAH_SLO_LATENCY_PERCENT",
            "Default share of forwarded calls (percent) that must be within DARGAH_SLO_LATENCY_MS.",
        ),
    )
    alert_webhook: str = field(
        default="",
        metadata=_meta(
            "DARGAH_ALERT_WEBHOOK",
            "URL that gets an Alertmanager-style JSON POST when an incident opens, changes or "
            "resolves.",
        ),
    )
    alert_email: str = field(
        default="",
        metadata=_meta(
            "DARGAH_ALERT_EMAIL",
            "Address that gets an e-mail (in the outbox) when an incident opens, changes or "
            "resolves.",
        ),
    )
    otlp_endpoint: str = field(
        default="",
        metadata=_meta(
            "DARGAH_OTLP_ENDPOINT",
            "OpenTelemetry collector (OTLP/HTTP, e.g. http://collector:4318): one span per call.",
        ),
    )
    redis_url: str = field(
        default="",
        metadata=_meta(
            "DARGAH_REDIS_URL",
            "Redis for rate limits shared by every bus process (scale-out); empty: per process.",
        ),
    )
    nats_url: str = field(
        default="",
        metadata=_meta(
            "DARGAH_NATS_URL",
            "NATS with JetStream (nats://host:4222): every log record and event is shipped there.",
        ),
    )
    nats_stream: str = field(
        default="",
        metadata=_meta(
            "DARGAH_NATS_STREAM",
            "Name prefix of the instance's JetStream streams (default DARGAH_{INSTANCE}).",
        ),
    )
    event_dead_after_seconds: float = field(
        default=86400.0,
        metadata=_meta(
            "DARGAH_EVENT_DEAD_AFTER_SECONDS",
            "How long a webhook delivery is retried before it goes to the dead-letter list.",
        ),
    )
    event_max_bytes: int = field(
        default=1024 * 1024,
        metadata=_meta("DARGAH_EVENT_MAX_BYTES", "Largest event a provider may publish, in bytes."),
    )
    event_delivery_timeout: float = field(
        default=10.0,
        metadata=_meta(
            "DARGAH_EVENT_DELIVERY_TIMEOUT", "Seconds a subscriber's webhook has to answer."
        ),
    )
    portal_client_id: str = field(
        default="",
        metadata=_meta(
            "DARGAH_PORTAL_CLIENT_ID",
            "The portal's own subsystem on the bus (client id); it reaches agencies only with it.",
        ),
    )
    portal_key_file: str = field(
        default="",
        metadata=_meta(
            "DARGAH_PORTAL_KEY_FILE",
            "PKCS#8 PEM private key the portal signs its token requests with.",
        ),
    )
    portal_bus_url: str = field(
        default="",
        metadata=_meta(
            "DARGAH_PORTAL_BUS_URL",
            "Bus URL the portal calls (default: DARGAH_PUBLIC_URL, else this process's address).",
        ),
    )
    portal_watch_seconds: float = field(
        default=60.0,
        metadata=_meta(
            "DARGAH_PORTAL_WATCH_SECONDS",
            "Seconds between the portal's rounds asking agencies for news of open applications "
            "and of signed-in citizens, and reading open incidents, to tell citizens by SMS; "
            "0 turns it off.",
        ),
    )
    otp_ttl: int = field(
        default=120, metadata=_meta("DARGAH_OTP_TTL", "Seconds a sign-in one-time code is valid.")
    )
    session_hours: float = field(
        default=8.0,
        metadata=_meta("DARGAH_SESSION_HOURS", "How long a portal or console session lasts."),
    )
    sandbox_decide_seconds: float = field(
        default=45.0,
        metadata=_meta(
            "DARGAH_SANDBOX_DECIDE_SECONDS",
            "Sandbox only: seconds before the welfare agency decides an application.",
        ),
    )
    drain_seconds: float = field(
        default=0.0,
        metadata=_meta(
            "DARGAH_DRAIN_SECONDS",
            "On SIGTERM, answer /readyz 503 and go on serving for this long before stopping, "
            "so a load balancer moves away first (behind one: a little more than its check "
            "interval times its fall count, e.g. 3).",
        ),
    )
    trusted_proxies: str = field(
        default="",
        metadata=_meta(
            "DARGAH_TRUSTED_PROXIES",
            "CIDRs of the load balancers in front of the bus (comma-separated; empty: none). "
            "Only from these is X-Forwarded-For / Forwarded believed for the client's address, "
            "and the client-certificate header (DARGAH_CLIENT_CERT_HEADER) accepted.",
        ),
    )
    outbound_allow: str = field(
        default="",
        metadata=_meta(
            "DARGAH_OUTBOUND_ALLOW",
            "CIDRs a production instance may still send to although they are loopback, "
            "reserved, private or its own (comma-separated), e.g. a provider's sidecar.",
        ),
    )
    forbid_private_targets: bool = field(
        default=False,
        metadata=_meta(
            "DARGAH_FORBID_PRIVATE_TARGETS",
            "1: a production instance refuses providers and webhooks on private-use addresses "
            "(10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7).",
        ),
    )
    log_level: str = field(
        default="info", metadata=_meta("DARGAH_LOG_LEVEL", "debug, info, warning or error.")
    )

    @property
    def db_url(self) -> str:
        """The SQLAlchemy URL of the instance's database."""
        if self.database_url:
            url = self.database_url
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
            elif url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url.removeprefix("postgres://")
            return url
        return f"sqlite:///{self.home.resolve() / 'dargah.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def settings_from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from the environment (``os.environ`` by default) and explicit overrides."""
    source = os.environ if env is None else env
    values: dict[str, Any] = {}
    for f in fields(Settings):
        raw = source.get(f.metadata["env"])
        if raw is None or raw == "":
            continue
        if f.type in ("bool", bool):
            values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
        elif f.type in ("int", int):
            values[f.name] = int(raw)
        elif f.type in ("float", float):
            values[f.name] = float(raw)
        elif f.type in ("Path", Path):
            values[f.name] = Path(raw)
        elif f.type == "tuple[str, ...]":
            values[f.name] = tuple(p.strip() for p in raw.split(",") if p.strip())
        else:
            values[f.name] = raw
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "home" in values:
        values["home"] = Path(values["home"])
    return Settings(**values)


def documented_settings() -> list[tuple[str, str, str]]:
    """(name, environment variable, help) for every setting."""
    return [(f.name, f.metadata["env"], f.metadata["help"]) for f in fields(Settings)]
