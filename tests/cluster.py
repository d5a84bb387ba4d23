"""Several bus nodes of one instance on this machine, and haproxy in front of them, for tests.

Each :class:`Node` is a ``dargah serve bus registry`` process with a home of its own, on the
instance's shared PostgreSQL database (and Redis and NATS when given): what an operator runs
on each machine. :class:`Balancer` runs haproxy with the repository's ``deploy/haproxy.cfg``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from tests.harness import DARGAH, free_port

REPO = Path(__file__).resolve().parent.parent
HAPROXY_CFG = REPO / "deploy" / "haproxy.cfg"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
REDIS_URL = os.environ.get("DARGAH_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
NATS_URL = os.environ.get("DARGAH_TEST_NATS_URL", "nats://127.0.0.1:4222")


def via_port(url: str, port: int) -> str:
    """``url`` with its host and port replaced by 127.0.0.1:``port`` (a tests/tcp_cut.py forwarder)."""
    parts = urlsplit(url)
    user = parts.netloc.rsplit("@", 1)
    netloc = (user[0] + "@" if len(user) == 2 else "") + f"127.0.0.1:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def db_port(url: str) -> int:
    return urlsplit(url).port or 5432


@dataclass
class Node:
    """One bus node: its own home and port; ``clock_offset`` runs it with a skewed wall clock."""

    name: str
    home: Path
    env: dict[str, str]
    clock_offset: float | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 40.0) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        args = ["serve", "bus", "registry", "--home", str(self.home), "--port", str(self.port)]
        if self.clock_offset is None:
            argv = [DARGAH, *args]
        else:
            argv = [sys.executable, "-m", "tests.skewed_clock", str(self.clock_offset), *args]
        out = open(self.home / "node.log", "ab")
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env={**os.environ, "DARGAH_LOG_LEVEL": "warning", **self.env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} was not ready in {timeout:g} s: {self.log_tail()}")

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    def log_tail(self) -> str:
        path = self.home / "node.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None and self.proc.poll() is None, f"{self.name} is not running"
        os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGCONT)  # a frozen node cannot stop
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class Balancer:
    """haproxy with ``deploy/haproxy.cfg``, in the foreground, in front of ``nodes``."""

    def __init__(self, nodes: list[Node], workdir: Path) -> None:
        assert len(nodes) == 3, "deploy/haproxy.cfg names three nodes"
        self.port = free_port()
        self.stats_port = free_port()
        self.env = {
            **os.environ,
            "DARGAH_LB_BIND": f"127.0.0.1:{self.port}",
            "DARGAH_LB_STATS_BIND": f"127.0.0.1:{self.stats_port}",
            **{f"DARGAH_NODE{i}": n.address for i, n in enumerate(nodes, 1)},
        }
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def check(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [HAPROXY, "-c", "-f", str(HAPROXY_CFG)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        out = open(self.workdir / "haproxy.log", "ab")
        self.proc = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(HAPROXY_CFG)],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.workdir / "haproxy.log").read_text()[-2000:]
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("haproxy did not pass a call in 15 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
