"""Three bus nodes behind haproxy (``deploy/haproxy.cfg``) under a small steady load, on
PostgreSQL, Redis and NATS: one node is killed with SIGKILL and started again, one is frozen
with SIGSTOP for 20 s and resumed, and one loses its database connection for 5 s.

What must hold: every exchange answered 200 is in the message log, ``dargah log verify``
finds the log intact, and the nodes that are healthy keep answering, their p99 under 1 s,
whatever the others do: no node waits for another on the per-call path.

The node is frozen at the worst moment the test can find: while another node's database
session waits for one of its own (each node names itself to PostgreSQL with
``application_name``), if such a moment comes within 5 s, so that whatever it holds that
the others need stays held for the 20 s.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from dargah.store.tables import message_log
from tests.cluster import NATS_URL, REDIS_URL, Balancer, Node, db_port, via_port
from tests.harness import DARGAH, PURPOSE, SUBJECT, make_world
from tests.providers import Provider
from tests.tcp_cut import Forwarder

WORKERS = 4  # concurrent callers; each pauses a little between calls (2 shared cores)
# A caller's own timeout: a call caught on a frozen node costs its caller this much, then the
# caller goes on (the balancer has marked the node down by then) -- as agencies' clients do.
CALLER_TIMEOUT = 3.0
PAUSE = 0.02
FREEZE_SECONDS = 20.0
CUT_SECONDS = 5.0
SETTLE = 2.0  # after a fault ends, the node gets this long before it counts as healthy again
P99_LIMIT = 1.0


@dataclass
class Answer:
    started: float
    ended: float
    status: int  # 0: no answer (the caller's own timeout or a broken connection)
    node: str | None  # haproxy's X-Served-By
    request_id: str
    problem: str = ""  # the problem code of a refusal, to say what went wrong

    @property
    def latency(self) -> float:
        return self.ended - self.started


def _reachable(what: str, check: object) -> None:
    try:
        assert callable(check)
        check()
    except Exception as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{what} must be reachable in CI: {exc}")
        pytest.skip(f"{what} not reachable: {exc}")


def _redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()


def _nats(stream: str | None = None) -> None:
    import nats

    async def run() -> None:
        nc = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=0)
        try:
            if stream is not None:
                js = nc.jetstream()
                for suffix in ("_LOG", "_EVENTS"):
                    try:
                        await js.delete_stream(stream + suffix)
                    except Exception:
                        pass
        finally:
            await nc.close()

    asyncio.run(run())


class Load:
    """``WORKERS`` callers through the load balancer until stopped; every answer is kept."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(WORKERS)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=40)

    def _run(self) -> None:
        with httpx.Client(timeout=CALLER_TIMEOUT) as http:
            while not self._stop.is_set():
                rid = str(uuid.uuid4())
                started = time.monotonic()
                status, node, problem = 0, None, ""
                try:
                    r = http.get(
                        self.url,
                        headers={
                            "Authorization": f"Bearer {self.token}",
                            "GSB-Purpose": PURPOSE,
                            "GSB-Subject": SUBJECT,
                            "GSB-Request-Id": rid,
                        },
                    )
                    status, node = r.status_code, r.headers.get("x-served-by")
                    if status != 200:
                        problem = r.text[:200]
                except httpx.HTTPError:
                    pass
                self.answers.append(Answer(started, time.monotonic(), status, node, rid, problem))
                time.sleep(PAUSE)


@pytest.fixture
def stream_name() -> Iterator[str]:
    name = f"T_CLUSTER_{secrets.token_hex(4).upper()}"
    yield name
    _nats(name)


def _with_name(url: str, name: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


def _freeze_while_needed(node: Node, app_prefix: str) -> bool:
    """SIGSTOP ``node`` at a moment when another node's database session waits for one of its
    sessions (it holds something the others need): stop it, look, and let it go on for a few
    milliseconds if nobody waits for it, for up to 5 s. True if such a moment was found (the
    node stays stopped either way)."""
    import psycopg

    from tests.conftest import PG_URL

    name = app_prefix + node.name
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        deadline = time.monotonic() + 5
        while True:
            node.signal(signal.SIGSTOP)
            time.sleep(0.03)  # what it had sent before it stopped is done by now
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity w WHERE w.application_name LIKE %s "
                "AND w.application_name <> %s AND EXISTS (SELECT 1 FROM pg_stat_activity h "
                "WHERE h.pid = ANY(pg_blocking_pids(w.pid)) AND h.application_name = %s)",
                (app_prefix + "%", name, name),
            ).fetchone()
            if row is not None and row[0] > 0:
                return True
            if time.monotonic() > deadline:
                return False
            node.signal(signal.SIGCONT)
            time.sleep(0.02)


def _lock_waits(app_prefix: str) -> int:
    """Backends of this test's nodes waiting for a lock right now."""
    import psycopg

    from tests.conftest import PG_URL

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s "
            "AND wait_event_type = 'Lock'",
            (app_prefix + "%",),
        ).fetchone()
    return int(row[0]) if row else 0


_LOGGED = re.compile(r" nodes/(\S+) .*\{([0-9a-f-]{36})\}")


def _routed(haproxy_log: Path) -> dict[str, str]:
    """The node haproxy sent each call to, by GSB-Request-Id (deploy/haproxy.cfg logs both),
    calls that never got an answer included."""
    out = {}
    for line in haproxy_log.read_text(errors="replace").splitlines():
        m = _LOGGED.search(line)
        if m:
            out[m.group(2)] = m.group(1)
    return out


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


@pytest.mark.slow
def test_three_nodes_lose_nothing_and_healthy_nodes_stay_fast_while_one_is_killed_one_frozen_and_one_cut_off(
    tmp_path: Path, provider: Provider, pg_database_url: str, stream_name: str
) -> None:
    _reachable("Redis", _redis)
    _reachable("NATS", _nats)
    w = make_world(tmp_path / "home", provider.url, pg_database_url)
    sid = w.add_service("person-inquiry.v1", "/echo", personal_data=True)
    w.grant("cons", sid)
    fwd = Forwarder(db_port(pg_database_url))
    env = {
        "DARGAH_DATABASE_URL": pg_database_url,
        "DARGAH_REDIS_URL": REDIS_URL,
        "DARGAH_NATS_URL": NATS_URL,
        "DARGAH_NATS_STREAM": stream_name,
    }
    nodes = [Node(f"node{i}", tmp_path / f"node{i}", dict(env)) for i in (1, 2, 3)]
    killed, frozen, cut_off = nodes
    cut_off.env["DARGAH_DATABASE_URL"] = via_port(pg_database_url, fwd.port)
    app = f"{stream_name.lower()}-"
    for n in nodes:
        n.env["DARGAH_DATABASE_URL"] = _with_name(n.env["DARGAH_DATABASE_URL"], app + n.name)
    lb = Balancer(nodes, tmp_path / "lb")
    for n in nodes:
        n.env["DARGAH_PUBLIC_URL"] = lb.url
    load: Load | None = None
    windows: dict[str, tuple[float, float]] = {}  # node -> when it was not healthy
    try:
        for n in nodes:
            n.start()
        lb.start()
        r = httpx.post(
            f"{lb.url}/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": w.clients["cons"].id,
                "client_secret": w.clients["cons"].secret,
            },
        )
        assert r.status_code == 200, r.text
        load = Load(f"{lb.url}/r1/{sid}/persons/{SUBJECT}", r.json()["access_token"])
        t0 = time.monotonic()
        load.start()

        def at(base: float, offset: float) -> None:
            time.sleep(max(0.0, base + offset - time.monotonic()))

        at(t0, 3)
        kill_at = time.monotonic()
        killed.kill()
        at(t0, 6)
        killed.start()
        windows["node1"] = (kill_at, time.monotonic())
        at(t0, 10)
        caught = _freeze_while_needed(frozen, app)
        freeze_at = time.monotonic()
        at(freeze_at, 2)
        waits = _lock_waits(app)
        at(freeze_at, 3)
        cut_at = time.monotonic()
        fwd.cut()
        at(cut_at, CUT_SECONDS)
        fwd.restore()
        windows["node3"] = (cut_at, time.monotonic())
        at(freeze_at, FREEZE_SECONDS)
        frozen.signal(signal.SIGCONT)
        windows["node2"] = (freeze_at, time.monotonic())
        at(windows["node2"][1], 8)
        load.stop()
    finally:
        if load is not None:
            load.stop()
        lb.stop()
        for n in nodes:
            n.stop()
        fwd.close()

    routed = _routed(lb.workdir / "haproxy.log")
    answers = load.answers
    for a in answers:
        a.node = a.node or routed.get(a.request_id)
    faults = (min(s for s, _ in windows.values()), max(e for _, e in windows.values()) + SETTLE)

    def unhealthy(a: Answer) -> bool:
        if a.node not in windows:
            return False
        start, end = windows[a.node]
        return a.started < end + SETTLE and a.ended > start

    ok = [a for a in answers if a.status == 200]
    healthy = [a for a in answers if a.node is not None and not unhealthy(a)]
    during_freeze = [
        a
        for a in healthy
        if a.status == 200
        and windows["node2"][0] + 3 < a.started < windows["node2"][1]
        and a.node != "node2"
    ]
    failed = [a for a in answers if a.status != 200]
    p99 = _p99([a.latency for a in healthy])  # calls that got no answer count at their wait
    per_node = {n.name: sum(1 for a in ok if a.node == n.name) for n in nodes}
    print(
        f"\n{len(answers)} calls, {len(ok)} answered 200 ({per_node}), "
        f"{len(failed)} not ({sorted({a.status for a in failed})}, "
        f"{sum(1 for a in failed if a.node is None)} of them not routed to any node); "
        f"healthy nodes: {len(healthy)} answers, p99 {p99 * 1000:.0f} ms, "
        f"{len(during_freeze)} while node2 was frozen (frozen while another node waited for it: {caught}; "
        f"the others' backends waiting for a lock 2 s into the freeze: {waits})"
    )

    # Every exchange answered 200 is in the log, and the log is intact.
    with w.engine.connect() as conn:
        logged = set(conn.execute(select(message_log.c.request_id)).scalars())
    missing = [a.request_id for a in ok if a.request_id not in logged]
    assert not missing, f"{len(missing)} answered exchanges are not in the log: {missing[:5]}"
    verify = subprocess.run(
        [DARGAH, "log", "verify", "--home", str(w.settings.home)],
        env={**os.environ, "DARGAH_DATABASE_URL": pg_database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verify.returncode == 0 and "intact" in verify.stdout, verify.stdout + verify.stderr
    w.engine.dispose()

    # The healthy nodes kept answering, quickly, whatever the others did: while node2 was
    # frozen they answered at least half as many calls a second as all three did before.
    before = sum(1 for a in ok if a.ended < kill_at) / (kill_at - t0)
    frozen_for = windows["node2"][1] - windows["node2"][0] - 3
    assert len(during_freeze) / frozen_for >= before / 2, (
        f"while node2 was frozen the others answered {len(during_freeze) / frozen_for:.1f} "
        f"calls/s, against {before:.1f} before: they waited for it"
    )
    assert p99 < P99_LIMIT, f"healthy nodes' p99 {p99:.3f} s"
    # Anything but 200 came from a node in trouble, while it was in trouble.
    from_healthy = [a for a in healthy if a.status != 200]
    assert not from_healthy, [
        (a.status, a.node, a.started - t0, a.problem) for a in from_healthy[:5]
    ]
    outside = [a for a in failed if not (faults[0] <= a.ended and a.started <= faults[1])]
    assert not outside, [(a.status, a.node, a.started - t0) for a in outside[:5]]
    assert {a.status for a in failed} <= {0, 502, 503, 504}, sorted({a.status for a in failed})
    # Each node served again once it was back.
    for n in nodes:
        back = windows[n.name][1] + SETTLE
        assert any(a.node == n.name and a.started > back for a in ok), f"{n.name} did not rejoin"
