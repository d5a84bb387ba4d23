"""``make cluster`` (scripts/cluster.py): three nodes behind haproxy on this machine's
PostgreSQL, Redis and NATS, their addresses printed, a call through the load balancer
answered, and everything stopped cleanly by ``make cluster-stop``'s command."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.cluster import NATS_URL, REDIS_URL, REPO
from tests.conftest import _PG_ERROR, PG_URL
from tests.harness import free_port

SCRIPT = str(REPO / "scripts" / "cluster.py")


@pytest.mark.slow
def test_make_cluster_starts_three_nodes_behind_haproxy_and_stops_them_cleanly(
    tmp_path: Path,
) -> None:
    if _PG_ERROR is not None:
        pytest.skip(f"PostgreSQL not reachable: {_PG_ERROR}")
    schema = f"t_cluster_{secrets.token_hex(4)}"
    ports = [free_port() for _ in range(5)]
    env = {
        **os.environ,
        "CLUSTER_DIR": str(tmp_path / "cluster"),
        "CLUSTER_DATABASE_URL": PG_URL,
        "CLUSTER_SCHEMA": schema,
        "CLUSTER_REDIS_URL": REDIS_URL,
        "CLUSTER_NATS_URL": NATS_URL,
        "CLUSTER_PORT": str(ports[0]),
        "CLUSTER_STATS_PORT": str(ports[1]),
        "CLUSTER_NODE_PORTS": ",".join(map(str, ports[2:])),
    }
    out = tmp_path / "out.txt"
    with open(out, "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, SCRIPT, "start"], env=env, stdout=f, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 90
        while "Stop:" not in out.read_text():
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.3)
        printed = out.read_text()
        for port in ports[:1] + ports[2:]:
            assert f"http://127.0.0.1:{port}" in printed, printed
        token = (tmp_path / "cluster" / "admin-token").read_text().strip()
        assert token in printed
        lb = f"http://127.0.0.1:{ports[0]}"
        assert httpx.get(f"{lb}/readyz", timeout=5).json()["status"] == "ready"
        nodes = set()
        for _ in range(12):
            r = httpx.get(
                f"{lb}/api/v1/members", headers={"Authorization": f"Bearer {token}"}, timeout=5
            )
            assert r.status_code == 200, r.text
            nodes.add(r.headers["x-served-by"])
        assert nodes == {"node1", "node2", "node3"}, nodes
        stop = subprocess.run(
            [sys.executable, SCRIPT, "stop"], env=env, capture_output=True, text=True, timeout=60
        )
        assert stop.returncode == 0 and "cluster stopped" in stop.stdout, stop.stdout + stop.stderr
        assert proc.wait(timeout=10) == 0, out.read_text()
        for port in ports[:1] + ports[2:]:
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        _delete_streams(f"DARGAH_{schema.upper()}")


def _delete_streams(prefix: str) -> None:
    import asyncio

    import nats

    async def run() -> None:
        try:
            nc = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=0)
        except Exception:
            return
        js = nc.jetstream()
        for suffix in ("_LOG", "_EVENTS"):
            try:
                await js.delete_stream(prefix + suffix)
            except Exception:
                pass
        await nc.close()

    asyncio.run(run())
