"""The bus under test: an instance made with the CLI, its token, its log afterwards."""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from _config import (
    BODY,
    BUS_PATH,
    CLIENT,
    CLIENT_MEMBER,
    DARGAH,
    NGINX,
    NGINX_COMMON,
    PROVIDER,
    PROVIDER_MEMBER,
    PURPOSE,
    SERVICE,
    call_headers,
)
from _procs import (
    BenchError,
    Proc,
    Processes,
    free_port,
    http,
    wait_http,
)
from _wrk import Target, pinned, write_wrk_script


def dargah(home: Path, *args: str, env: dict[str, str] | None = None) -> str:
    argv = [str(DARGAH), *args, "--home", str(home)]
    res = subprocess.run(
        argv, capture_output=True, text=True, timeout=120, env=bus_env(**(env or {}))
    )
    if res.returncode != 0:
        raise BenchError(f"`{' '.join(argv)}` failed ({res.returncode}):\n{res.stdout}{res.stderr}")
    return res.stdout


def bus_env(**extra: str) -> dict[str, str]:
    """The environment without any DARGAH_* setting of the caller's, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DARGAH_")}
    env["DARGAH_LOG_LEVEL"] = "warning"
    env.update(extra)
    return env


def make_instance(home: Path, upstream_port: int, env: dict[str, str] | None = None) -> str:
    """A fresh instance with one provider, one client and a grant; returns the client secret.
    ``env``: settings of the instance (DARGAH_DATABASE_URL for PostgreSQL)."""
    dargah(home, "member", "add", PROVIDER_MEMBER, "--name", "X", env=env)
    dargah(home, "member", "add", CLIENT_MEMBER, "--name", "Y", env=env)
    dargah(home, "subsystem", "add", PROVIDER, env=env)
    out = dargah(home, "subsystem", "add", CLIENT, "--secret", env=env)
    secret = json.loads(out).get("client_secret")
    if not secret:
        raise BenchError(f"`subsystem add --secret` printed no client_secret:\n{out}")
    dargah(
        home,
        "service",
        "add",
        SERVICE,
        "--url",
        f"http://127.0.0.1:{upstream_port}/api",
        "--personal-data",
        "--supplies",
        "person.identity",
        env=env,
    )
    dargah(home, "grant", "add", CLIENT, SERVICE, "--purpose", PURPOSE, env=env)
    return str(secret)


def get_token(base: str, secret: str) -> str:
    form = urllib.parse.urlencode(
        {"grant_type": "client_credentials", "client_id": CLIENT, "client_secret": secret}
    ).encode()
    status, _, body = http(
        "POST",
        f"{base}/oauth/token",
        data=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    if status != 200:
        raise BenchError(f"token request answered {status}: {body[:300]!r}")
    return str(json.loads(body)["access_token"])


def preflight_bus(base: str, token: str) -> None:
    """One call by hand: it must answer 200 with the upstream's body and a log id."""
    status, headers, body = http("GET", base + BUS_PATH, headers=call_headers(token))
    if status != 200:
        raise BenchError(f"the bus answered {status} to a granted call: {body[:400]!r}")
    if body != BODY.encode():
        raise BenchError(f"the bus returned a different body: {body[:300]!r}")
    if "gsb-log-id" not in headers:
        raise BenchError("the bus's answer has no GSB-Log-Id header")


def log_counts(home: Path) -> tuple[int, int, int]:
    """(records, max seq, seals) of the message log, read with plain SQL."""
    con = sqlite3.connect(f"file:{home / 'dargah.db'}?mode=ro", uri=True, timeout=30)
    try:
        n, top = con.execute("SELECT COUNT(*), MAX(seq) FROM message_log").fetchone()
        try:
            seals = con.execute("SELECT COUNT(*) FROM message_log_seal").fetchone()[0]
        except sqlite3.Error:
            seals = -1
        return int(n), int(top or 0), int(seals)
    finally:
        con.close()


def log_verify(home: Path) -> str:
    argv = [str(DARGAH), "log", "verify", "--home", str(home)]
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=bus_env())
    except subprocess.TimeoutExpired:
        return "`dargah log verify` did not finish in 300 s"
    text = (res.stdout + res.stderr).strip()
    if res.returncode == 2 and "No such command" in text:
        return "`dargah log verify` is not available yet (skipped)"
    lines = text.splitlines()
    shown = "\n    ".join(lines[-8:]) if lines else "(no output)"
    return f"`dargah log verify` exit status {res.returncode}:\n    {shown}"


def start_bus(
    procs: Processes,
    tmp: Path,
    home: Path,
    up: Proc,
    secret: str,
    durability: str,
    args: argparse.Namespace,
    core: int | None = None,
    workers: int | None = None,
) -> Target:
    """``dargah serve bus`` with one log durability, ready, with a token and one good call;
    ``args.workers`` processes (or ``workers``), pinned to ``core`` if given (``taskset``:
    the bus and every process and thread it starts run on that one core)."""
    port = free_port()
    workers = args.workers if workers is None else workers
    name = f"bus ({durability})" if core is None else f"bus ({durability}, core {core})"
    bus = procs.start(
        name,
        pinned(
            core,
            [
                str(DARGAH),
                "serve",
                "bus",
                "--home",
                str(home),
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
        ),
        tmp / f"bus-{durability}-{port}.log",
        env=bus_env(DARGAH_LOG_DURABILITY=durability),
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/readyz", bus, timeout=60)
    token = get_token(base, secret)
    preflight_bus(base, token)
    return Target(
        name,
        workers,
        base + BUS_PATH,
        write_wrk_script(
            tmp / f"bus-{durability}-{port}.lua", token, BUS_PATH.rsplit("/", 1)[0] + "/"
        ),
        bus,
        up,
        core=core,
    )


def group_commit_sizes(base: str) -> str:
    """Records per group commit of each worker that answers /metrics (new connection each time,
    so the kernel spreads them over the workers)."""
    seen: dict[tuple[float, float], None] = {}
    for _ in range(12):
        try:
            _, _, body = http("GET", f"{base}/metrics", timeout=5)
        except OSError:
            continue
        text = body.decode(errors="replace")
        m1 = re.search(r"^gsb_log_records_committed\S*\s+([0-9.e+]+)", text, re.M)
        m2 = re.search(r"^gsb_log_batches_committed\S*\s+([0-9.e+]+)", text, re.M)
        if m1 and m2:
            seen[(float(m1.group(1)), float(m2.group(1)))] = None
    return ", ".join(
        f"{r / b:.1f} ({r:.0f} records in {b:.0f} commits)" for r, b in sorted(seen) if b
    )


def check_log(home: Path, buses: list[Target], name: str = "message log") -> list[str]:
    """The message log after all buses stopped: one record per answered call, gap-free, sealed."""
    n, top, seals = log_counts(home)
    answered = sum(r.requests for t in buses for r in (*t.loads, *t.singles))
    lines = [
        f"{name}: {n} records (SELECT COUNT(*), MAX(seq) FROM message_log: {n}, {top}; "
        f"{'gap-free' if n == top else 'NOT gap-free'}), {seals} seals; wrk counted {answered} "
        f"measured answers from the bus (the rest: warm-ups and the calls in flight when wrk "
        f"stopped)",
        f"{name}: {log_verify(home)}",
    ]
    if n < answered or n != top:
        raise BenchError("\n".join(lines))
    return lines


def start_nginx(
    procs: Processes, name: str, prefix: Path, workers: int, server: str, core: int | None = None
) -> Proc:
    """nginx in the foreground with ``workers`` worker processes, all on ``core`` if given."""
    prefix.mkdir(parents=True)
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_COMMON.format(workers=workers, prefix=prefix, body=server))
    argv = [
        NGINX,
        "-p",
        str(prefix),
        "-c",
        str(conf),
        "-e",
        str(prefix / "error.log"),
        "-g",
        "daemon off;",
    ]
    test = subprocess.run([*argv[:-2], "-t"], capture_output=True, text=True, timeout=30)
    if test.returncode != 0:
        raise BenchError(f"nginx rejected the {name} config {conf}:\n{test.stderr}")
    return procs.start(name, pinned(core, argv), prefix / "stdout.log")
