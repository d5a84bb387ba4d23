"""Three bus nodes behind haproxy on this machine's PostgreSQL, Redis and NATS, for trying a
cluster (``make cluster``; ``make cluster-stop`` or Ctrl-C stops it).

    python scripts/cluster.py start    # in the foreground: prints the addresses, waits
    python scripts/cluster.py stop     # from elsewhere: stops a running one cleanly

Everything is configurable from the environment (defaults in brackets):

    CLUSTER_DIR           [.cluster]  homes of the nodes, logs, the admin token, the pid file
    CLUSTER_DATABASE_URL  [postgresql://postgres@127.0.0.1:5432/test]
    CLUSTER_SCHEMA        [dargah_cluster]  the instance's own schema in that database
    CLUSTER_REDIS_URL     [redis://127.0.0.1:6379/0]
    CLUSTER_NATS_URL      [nats://127.0.0.1:4222]  ("" for none)
    CLUSTER_PORT          [8080]  haproxy, where callers connect
    CLUSTER_STATS_PORT    [8404]  haproxy's statistics page
    CLUSTER_NODE_PORTS    [8101,8102,8103]
    CLUSTER_INSTANCE      [DEV]

Each node is ``dargah serve bus registry`` with a home of its own, as on its own machine
(see docs/operators.md, "Several nodes"); haproxy runs ``deploy/haproxy.cfg``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DARGAH = str(BIN / "dargah")


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


DIR = Path(_env("CLUSTER_DIR", str(REPO / ".cluster"))).resolve()
PIDFILE = DIR / "cluster.pid"
SCHEMA = _env("CLUSTER_SCHEMA", "dargah_cluster")
BASE_URL = _env("CLUSTER_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = _env("CLUSTER_REDIS_URL", "redis://127.0.0.1:6379/0")
NATS_URL = _env("CLUSTER_NATS_URL", "nats://127.0.0.1:4222")
LB_PORT = int(_env("CLUSTER_PORT", "8080"))
STATS_PORT = int(_env("CLUSTER_STATS_PORT", "8404"))
NODE_PORTS = [int(p) for p in _env("CLUSTER_NODE_PORTS", "8101,8102,8103").split(",")]
INSTANCE = _env("CLUSTER_INSTANCE", "DEV")
STOPPING = False  # set by SIGINT or SIGTERM


def _database_url(name: str | None = None) -> str:
    # A session left in a transaction by a frozen node is ended after 5 s, and what it held
    # (the message log's lock) is released (docs/operators.md, "What happens when...").
    sep = "&" if "?" in BASE_URL else "?"
    options = f"-csearch_path%3D{SCHEMA}%20-cidle_in_transaction_session_timeout%3D5000"
    url = f"{BASE_URL}{sep}options={options}"
    return f"{url}&application_name={name}" if name else url


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_ready(name: str, url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if STOPPING:
            sys.exit("stopped before the cluster was up")
        if proc.poll() is not None:
            sys.exit(
                f"{name} stopped at once; see {log}:\n{log.read_text(errors='replace')[-2000:]}"
            )
        if _ready(url):
            return
        time.sleep(0.2)
    sys.exit(f"{name} was not ready within 60 s; see {log}")


def _prepare() -> str:
    """The instance's schema (made if missing) and a fresh admin token named ``cluster``."""
    import psycopg

    if not SCHEMA.replace("_", "").isalnum():
        sys.exit(f"CLUSTER_SCHEMA must be letters, digits and _: {SCHEMA!r}")
    with psycopg.connect(BASE_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    env = {**os.environ, **_common_env()}
    home = ["--home", str(DIR / "admin")]
    subprocess.run(
        [DARGAH, "admin", "token", "revoke", "cluster", *home], env=env, capture_output=True
    )
    made = subprocess.run(
        [DARGAH, "admin", "token", "create", "cluster", *home],
        env=env,
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        sys.exit(f"could not prepare the instance: {made.stderr}")
    token = made.stdout.strip()
    print(f"instance ready in schema {SCHEMA}; starting three nodes and haproxy", flush=True)
    path = DIR / "admin-token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def _common_env() -> dict[str, str]:
    env = {
        "DARGAH_DATABASE_URL": _database_url(),
        "DARGAH_REDIS_URL": REDIS_URL,
        "DARGAH_INSTANCE": INSTANCE,
        "DARGAH_PUBLIC_URL": f"http://127.0.0.1:{LB_PORT}",
        "DARGAH_DRAIN_SECONDS": "3",
        "DARGAH_LOG_LEVEL": "warning",
    }
    if NATS_URL:
        env["DARGAH_NATS_URL"] = NATS_URL
        env["DARGAH_NATS_STREAM"] = f"DARGAH_{SCHEMA.upper()}"
    return env


def start() -> None:
    if len(NODE_PORTS) != 3:
        sys.exit("CLUSTER_NODE_PORTS must name three ports (deploy/haproxy.cfg has three nodes)")
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        sys.exit("haproxy is not installed (Debian: apt-get install haproxy)")
    DIR.mkdir(parents=True, exist_ok=True)
    if PIDFILE.exists():
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            os.kill(int(PIDFILE.read_text()), 0)
            sys.exit(
                f"a cluster is already running (pid {PIDFILE.read_text().strip()}): make cluster-stop"
            )
    PIDFILE.write_text(str(os.getpid()))
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def stop_all(*_: Any) -> None:
        global STOPPING
        if STOPPING:
            return
        STOPPING = True
        print("\nstopping: nodes drain for 3 s, then stop", flush=True)
        for _name, p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)
    try:
        token = _prepare()
        for i, port in enumerate(NODE_PORTS, 1):  # started together, each as on its machine
            name = f"node{i}"
            home = DIR / name
            home.mkdir(exist_ok=True)
            env = {
                **os.environ,
                **_common_env(),
                "DARGAH_DATABASE_URL": _database_url(f"dargah-{name}"),
            }
            with open(home / "node.log", "ab") as out:
                p = subprocess.Popen(
                    [DARGAH, "serve", "bus", "registry", "--home", str(home), "--port", str(port)],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C reaches this script, which stops them in turn
                )
            procs.append((name, p))
        for (name, p), port in zip(procs, NODE_PORTS, strict=True):
            _wait_ready(name, f"http://127.0.0.1:{port}", p, DIR / name / "node.log")
        lb_env = {
            **os.environ,
            "DARGAH_LB_BIND": f"127.0.0.1:{LB_PORT}",
            "DARGAH_LB_STATS_BIND": f"127.0.0.1:{STATS_PORT}",
            **{f"DARGAH_NODE{i}": f"127.0.0.1:{p}" for i, p in enumerate(NODE_PORTS, 1)},
        }
        lb_log = DIR / "haproxy.log"
        with open(lb_log, "ab") as out:
            lb = subprocess.Popen(
                [haproxy, "-db", "-f", str(REPO / "deploy" / "haproxy.cfg")],
                env=lb_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        procs.append(("haproxy", lb))
        _wait_ready("haproxy", f"http://127.0.0.1:{LB_PORT}", lb, lb_log)
        _print_addresses(token)
        while not STOPPING:
            for name, p in procs:
                if p.poll() is not None and not getattr(p, "reported", False):
                    p.reported = True  # type: ignore[attr-defined]
                    print(f"{name} exited ({p.returncode}); the others go on", flush=True)
            time.sleep(0.5)
    finally:
        stop_all()
        for _name, p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        PIDFILE.unlink(missing_ok=True)
        print("cluster stopped", flush=True)


def _print_addresses(token: str) -> None:
    lb = f"http://127.0.0.1:{LB_PORT}"
    lines = [
        f"Dargah cluster: instance {INSTANCE} in schema {SCHEMA} of {BASE_URL}",
        f"  Redis {REDIS_URL}" + (f", NATS {NATS_URL}" if NATS_URL else ", no NATS"),
        f"  load balancer   {lb}   (haproxy statistics: http://127.0.0.1:{STATS_PORT}/)",
    ]
    for i, port in enumerate(NODE_PORTS, 1):
        lines.append(
            f"  node{i}           http://127.0.0.1:{port}   log {DIR / f'node{i}' / 'node.log'}"
        )
    lines += [
        f"  admin API token {token}   (named 'cluster'; also in {DIR / 'admin-token'})",
        "",
        f"  curl {lb}/readyz",
        f"  curl -H 'Authorization: Bearer {token}' {lb}/api/v1/members",
        f"  DARGAH_DATABASE_URL='{_database_url()}' {DARGAH} log verify",
        "",
        "Stop: Ctrl-C here, or make cluster-stop.",
    ]
    print("\n".join(lines), flush=True)


def stop() -> None:
    try:
        pid = int(PIDFILE.read_text())
    except (OSError, ValueError):
        print("no cluster is running")
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        PIDFILE.unlink(missing_ok=True)
        print("no cluster is running")
        return
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if not PIDFILE.exists():  # removed once every process it started has stopped
            print("cluster stopped")
            return
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            PIDFILE.unlink(missing_ok=True)
            print("cluster stopped")
            return
        time.sleep(0.2)
    sys.exit(f"the cluster (pid {pid}) did not stop within 40 s")


if __name__ == "__main__":
    verb = sys.argv[1] if len(sys.argv) > 1 else ""
    if verb == "start":
        start()
    elif verb == "stop":
        stop()
    else:
        sys.exit(__doc__)
