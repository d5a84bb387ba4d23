"""Everything one bus process holds: settings, keys, the registry snapshot, pools, the log writer."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from typing import Any

from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import IntegrityError

from dargah.bus.alerts import AlertSender
from dargah.bus.health import HealthChecker, Readiness
from dargah.bus.limits import LocalCircuitBreaker, LocalRateLimiter, RateLimiter
from dargah.bus.log.backends import open_backend
from dargah.bus.log.chains import claim_chain
from dargah.bus.log.writer import LogWriter
from dargah.bus.metrics import BusMetrics, SharedMetrics
from dargah.bus.monitor import Monitor, Rules
from dargah.bus.outbound import OutboundGuard
from dargah.bus.slo import default_objective
from dargah.bus.stream import Shipper
from dargah.bus.tokens import TokenIssuer, TokenVerifier
from dargah.bus.tracing import SpanExporter
from dargah.bus.upstream import Pools
from dargah.core.forwarded import ClientAddresses
from dargah.core.identifiers import is_national_code
from dargah.core.keys import HS256, EdDSASigner, load_private_pem
from dargah.core.netaddr import target_policy
from dargah.core.settings import Settings
from dargah.http.tls import trust_client_certificates
from dargah.registry import audit
from dargah.registry.audit import current_version
from dargah.registry.instance import active_keys, all_public_jwks, instance_info
from dargah.registry.snapshot import Snapshot, load_snapshot
from dargah.store.db import READ_ONLY
from dargah.store.tables import used_jti

log = logging.getLogger("dargah.bus")


def default_public_url(settings: Settings) -> str:
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    scheme = "https" if settings.tls_cert_file else "http"
    return f"{scheme}://{host}:{settings.port}"


def _trust_certificates(snap: Snapshot) -> None:
    """Let this process's TLS addresses accept the self-signed certificates agencies registered
    (the bus still refuses a revoked one's tokens)."""
    trust_client_certificates(c.pem for c in snap.certs.values() if c.active and c.pem)


class BusRuntime:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.public_url = default_public_url(settings)
        with engine.connect() as conn:
            self.instance = instance_info(conn)
            keys = active_keys(conn)
            self.jwks = {"keys": all_public_jwks(conn)}
            self.snapshot: Snapshot = load_snapshot(conn)
        _trust_certificates(self.snapshot)
        ed = load_private_pem(keys["assertion"].private.encode())
        seal = load_private_pem(keys["seal"].private.encode())
        from cryptography.hazmat.primitives.asymmetric import ed25519

        if not isinstance(ed, ed25519.Ed25519PrivateKey) or not isinstance(
            seal, ed25519.Ed25519PrivateKey
        ):
            raise RuntimeError("the bus's signing keys must be Ed25519")
        self.assertion_signer = EdDSASigner(ed, keys["assertion"].kid)
        self.seal_signer = EdDSASigner(seal, keys["seal"].kid)
        token_mac = HS256(bytes.fromhex(keys["token"].private), keys["token"].kid)
        self._subject_key = bytes.fromhex(keys["subject"].private)
        self._subject_refs: dict[str, str] = {}
        self.body_key = (keys["body"].kid, bytes.fromhex(keys["body"].private))
        self.issuer = TokenIssuer(
            token_mac,
            f"{self.public_url}/oauth/token",
            settings.token_ttl,
            self.instance.sandbox,
            self._remember_jti,
        )
        self.verifier = TokenVerifier(token_mac)
        self.client_addresses = ClientAddresses(settings.trusted_proxies)
        self.outbound = OutboundGuard(target_policy(settings, not self.instance.sandbox))
        self.pools = Pools(settings.provider_connections, self.outbound)
        self.limiter: RateLimiter = LocalRateLimiter()
        if settings.redis_url:
            from dargah.bus.limits_redis import RedisRateLimiter

            scope = f"dargah:{self.instance.code}:{self.instance.created_at}"
            self.limiter = RedisRateLimiter(settings.redis_url, f"{scope}:rate")
        self.breaker = LocalCircuitBreaker(settings.breaker_failures, settings.breaker_open_seconds)
        self.metrics = BusMetrics()
        self.shared_metrics = SharedMetrics(settings.home / "run" / "metrics", self.metrics)
        self.chain_slot = claim_chain(settings)
        chain = self.chain_slot.chain
        self.writer = LogWriter(
            lambda: open_backend(settings.db_url, settings.log_durability, chain),
            self.seal_signer,
            seal_every_records=settings.seal_every_records,
            seal_every_seconds=settings.seal_every_seconds,
            chain=chain,
        )
        self.tracer = SpanExporter(settings.otlp_endpoint) if settings.otlp_endpoint else None
        self.health = HealthChecker(lambda: self.snapshot, settings.health_interval, self.outbound)
        self.monitor = Monitor(
            engine,
            self.health,
            lambda: self.snapshot,
            settings.health_interval,
            Rules(
                settings.incident_open_probes,
                settings.incident_resolve_probes,
                settings.incident_reopen_seconds,
                settings.monitor_grace_seconds,
            ),
            default_objective(settings),
            AlertSender(
                engine,
                settings.alert_webhook,
                settings.alert_email,
                self.public_url,
                self.instance.code,
            ),
        )
        self.registry_ok = True
        self.draining = False  # set on SIGTERM: not ready, so load balancers move away
        self.ready = Readiness(self.readiness)
        self._refresher: asyncio.Task[None] | None = None
        self._publisher: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._nudged: asyncio.Event | None = None
        self.shipper: Shipper | None = None
        if settings.nats_url:
            self.shipper = Shipper(
                engine, settings.nats_url, settings.instance, settings.nats_stream, chain
            )

    def subject_ref(self, national_code: str) -> str | None:
        """The HMAC of a valid national code (None for an invalid one); recent answers are kept."""
        ref = self._subject_refs.get(national_code)
        if ref is None:
            if not is_national_code(national_code):
                return None
            if len(self._subject_refs) >= 100_000:
                self._subject_refs.clear()
            ref = hmac.new(self._subject_key, national_code.encode(), hashlib.sha256).hexdigest()
            self._subject_refs[national_code] = ref
        return ref

    # -- lifecycle --------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.writer.start, loop)
        self._nudged = asyncio.Event()
        self._refresher = asyncio.create_task(self._refresh_loop())
        if self.settings.redis_url:
            self._listener = asyncio.create_task(self._listen_for_changes())
        self._publisher = asyncio.create_task(self._publish_loop())
        self.health.start()
        self.monitor.start()
        if self.shipper is not None:
            self.shipper.start()

    async def stop(self) -> None:
        for task in (self._refresher, self._publisher, self._listener):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.shipper is not None:
            await self.shipper.stop()
        await self.monitor.stop()
        await self.health.stop()
        self.shared_metrics.remove()
        close = getattr(self.limiter, "close", None)
        if close is not None:
            await close()
        self.writer.flush()
        await asyncio.to_thread(self.writer.stop)
        self.chain_slot.release()
        if self.tracer is not None:
            await asyncio.to_thread(self.tracer.close)

    async def _publish_loop(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            try:
                self.shared_metrics.publish()
            except OSError as exc:
                log.warning("could not share this process's metrics: %s", exc)

    async def _refresh_loop(self) -> None:
        nudged = self._nudged
        assert nudged is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(nudged.wait(), self.settings.refresh_seconds)
            # A nudge may arrive a moment before its transaction is visible: look twice more.
            for delay in (0.0, 0.05, 0.25) if nudged.is_set() else (0.0,):
                nudged.clear()
                await asyncio.sleep(delay)
                try:
                    snap = await asyncio.to_thread(self._reload_if_changed)
                    self.registry_ok = True
                except Exception as exc:
                    self.registry_ok = False
                    log.warning("registry refresh failed: %s", exc)
                    break
                if snap is not None:
                    self.snapshot = snap
                    _trust_certificates(snap)
                    break

    async def _listen_for_changes(self) -> None:
        """Reload as soon as another process announces a registry change on Redis."""
        import redis.asyncio

        from dargah.registry.changes import channel

        while True:
            client: Any = redis.asyncio.from_url(self.settings.redis_url)  # type: ignore[no-untyped-call]
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(channel(self.instance.code))
                    async for message in pubsub.listen():
                        if message.get("type") == "message" and self._nudged is not None:
                            self._nudged.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # polling goes on meanwhile
                log.warning("registry change notifications from Redis stopped: %s", exc)
                await asyncio.sleep(2.0)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()

    def _reload_if_changed(self) -> Snapshot | None:
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            if current_version(conn) == self.snapshot.version:
                return None
            snap = load_snapshot(conn)
            self.jwks = {"keys": all_public_jwks(conn)}
            return snap

    # -- token endpoint's database work (not on the /r1/ path) -------------

    def _remember_jti(self, jti: str, client: str, exp: int) -> bool:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(used_jti).values(jti=jti, client_id=client, exp=exp))
                if hash(jti) % 100 == 0:  # now and then, forget assertions long expired
                    conn.execute(delete(used_jti).where(used_jti.c.exp < int(time.time()) - 3600))
        except IntegrityError:
            return False
        return True

    def audit_token(self, client: str | None, ok: bool, detail: str) -> None:
        """Audit a token request. The actor is a registered client or ``oauth:unknown``: a
        refused request's claimed id is kept, shortened, only as a detail, so nobody can
        write entries in another's name."""
        action = audit.Action.TOKEN_ISSUE if ok else audit.Action.TOKEN_REFUSE
        known = client if client is not None and client in self.snapshot.clients else None
        after: dict[str, Any] = {"detail": detail[:300]}
        if known is None and client:
            after["claimed_client_id"] = client[:120]
        actor = known or "oauth:unknown"
        with self.engine.begin() as conn:
            audit.record(conn, actor, action, actor, None, after, bump=False)

    def readiness(self) -> dict[str, bool]:
        """Blocking; served through :attr:`ready`, which bounds its time."""
        db_ok = True
        try:
            with self.engine.connect().execution_options(**READ_ONLY) as conn:
                conn.execute(select(1))
        except Exception:
            db_ok = False
        return {
            "database": db_ok,
            "registry": self.registry_ok,
            "log": self.writer.healthy,
            "serving": not self.draining,
        }
