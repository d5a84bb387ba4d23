"""Bus throughput and latency against nginx, on loopback, in one bounded run.

Three targets get the same load from ``wrk`` (one thread):

1. the upstream itself: nginx answering ``GET /api/persons/...`` with a fixed
   246-byte JSON body (``worker_processes 1``);
2. nginx as a plain reverse proxy to that upstream (the reference;
   ``worker_processes 1``, upstream keep-alive);
3. the bus, with its full policy on every call: a fresh instance made with the
   ``dargah`` CLI like an operator would, ``dargah serve bus --workers W``,
   bearer token, grant and purpose check, subject validation, the durable
   chained message log and metrics. It is measured with each log durability
   asked for (``DARGAH_LOG_DURABILITY=process`` and ``power`` by default).

Each target gets a throughput load (``-c N``, default 64) and a one-connection
latency load (``-c 1``). The script prints a table, the bus/nginx throughput
ratio, the p50 latency the bus adds at one connection, and the verdict against
the goals (at least 1/3 of nginx's throughput, floor 1/5; at most 1 ms added
p50). Any non-2xx answer or socket error makes it fail loudly (exit 1).

Usage::

    .venv/bin/python bench/bus_throughput.py [--duration S] [--connections N] [--workers W]

Everything runs on 127.0.0.1 in temporary directories that are removed at the
end; every process started is stopped (process groups), also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
DARGAH = VENV_BIN / "dargah"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
WRK = shutil.which("wrk") or "/usr/bin/wrk"

PROVIDER_MEMBER = "10100387143"
CLIENT_MEMBER = "14003000014"
PROVIDER = f"DEV/GOV/{PROVIDER_MEMBER}/sabt"
CLIENT = f"DEV/GOV/{CLIENT_MEMBER}/tester"
SERVICE = f"{PROVIDER}/person-inquiry.v1"
PURPOSE = "identity-verification"
SUBJECT = "0499370899"
UPSTREAM_PATH = f"/api/persons/{SUBJECT}"
BUS_PATH = f"/r1/{SERVICE}/persons/{SUBJECT}"

# About 200 bytes of fixed JSON; no '$' (nginx would read it as a variable) and no "'".
BODY = json.dumps(
    {
        "national_code": SUBJECT,
        "first_name": "Sara",
        "last_name": "Ahmadi",
        "father_name": "Reza",
        "birth_date": "1368-04-12",
        "gender": "F",
        "alive": True,
        "birth_place": "Tehran",
        "issue_place": "Tehran",
        "card_serial": "1A23456789",
        "registered_at": "1368-04-20",
    },
    separators=(",", ":"),
)

GOAL_RATIO = 1 / 3
FLOOR_RATIO = 1 / 5
GOAL_ADDED_P50_MS = 1.0

INSTALL_HINT = "install them with: apt-get install -y nginx-light wrk"


class BenchError(Exception):
    """Something the run cannot go on with; the message says what."""


# --------------------------------------------------------------------------- processes


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


class Processes:
    """Every process the run starts, each in its own process group; stopped in reverse order."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []

    def start(
        self, name: str, argv: Sequence[str], log: Path, env: dict[str, str] | None = None
    ) -> Proc:
        out = log.open("ab")
        try:
            popen = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        finally:
            out.close()
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc, grace: float = 15.0) -> None:
        """SIGTERM to the group leader (a clean stop: the bus seals its log), then SIGKILL
        the whole group."""
        p = proc.popen
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                print(f"  {proc.name} did not stop in {grace:g} s: killing it", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)  # stragglers of the group (worker processes)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=5)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            try:
                self.stop(proc)
            except Exception as exc:  # keep stopping the others
                print(f"  could not stop {proc.name}: {exc}", file=sys.stderr)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def http(
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
    timeout: float = 5.0,
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # loopback only
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def wait_http(url: str, proc: Proc, timeout: float = 30.0, want: int = 200) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise BenchError(
                f"{proc.name} exited with status {proc.popen.returncode}:\n{tail(proc.log)}"
            )
        try:
            status, _, body = http("GET", url, timeout=2)
            if status == want:
                return
            last = f"status {status}: {body[:200]!r}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise BenchError(
        f"{proc.name} not ready at {url} after {timeout:g} s ({last}):\n{tail(proc.log)}"
    )


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        f = stat[stat.rfind(")") + 2 :].split()
        if int(f[1]) == pid:
            out.append(int(entry.name))
    return sorted(out)


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


CLK_TCK = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU time of every live process in process group ``pgid`` (all threads)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        f = stat[stat.rfind(")") + 2 :].split()  # f[0] is field 3 (state)
        if int(f[2]) == pgid:
            total += int(f[11]) + int(f[12])  # utime, stime
    return total / CLK_TCK


# --------------------------------------------------------------------------- nginx


NGINX_COMMON = """\
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
{body}
}}
"""

UPSTREAM_SERVER = """\
    server {{
        listen 127.0.0.1:{port} reuseport;
        location /api/persons/ {{
            default_type application/json;
            return 200 '{json}';
        }}
        location / {{ return 404; }}
    }}"""

PROXY_SERVER = """\
    upstream provider {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            proxy_pass http://provider;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;
        }}
    }}"""


def start_nginx(procs: Processes, name: str, prefix: Path, workers: int, server: str) -> Proc:
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
    return procs.start(name, argv, prefix / "stdout.log")


# --------------------------------------------------------------------------- the bus


def dargah(home: Path, *args: str) -> str:
    argv = [str(DARGAH), *args, "--home", str(home)]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=bus_env())
    if res.returncode != 0:
        raise BenchError(f"`{' '.join(argv)}` failed ({res.returncode}):\n{res.stdout}{res.stderr}")
    return res.stdout


def bus_env(**extra: str) -> dict[str, str]:
    """The environment without any DARGAH_* setting of the caller's, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DARGAH_")}
    env["DARGAH_LOG_LEVEL"] = "warning"
    env.update(extra)
    return env


def make_instance(home: Path, upstream_port: int) -> str:
    """A fresh instance with one provider, one client and a grant; returns the client secret."""
    dargah(home, "member", "add", PROVIDER_MEMBER, "--name", "X")
    dargah(home, "member", "add", CLIENT_MEMBER, "--name", "Y")
    dargah(home, "subsystem", "add", PROVIDER)
    out = dargah(home, "subsystem", "add", CLIENT, "--secret")
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
    )
    dargah(home, "grant", "add", CLIENT, SERVICE, "--purpose", PURPOSE)
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


def call_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "GSB-Purpose": PURPOSE, "GSB-Subject": SUBJECT}


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


# --------------------------------------------------------------------------- wrk


WRK_SCRIPT = """\
-- Generated by bench/bus_throughput.py: the headers of a bus call, sent to every target.
-- Each request is about another of {n} citizens, as real traffic is, so the message
-- log's subject index takes keys at random places.
wrk.method = "GET"
{headers}
local codes = {{{codes}}}
local prefix = "{prefix}"
local i = 0
function request()
  i = i % #codes + 1
  wrk.headers["GSB-Subject"] = codes[i]
  return wrk.format(nil, prefix .. codes[i])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {{"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "mean_us": %.1f, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}}\\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@dataclass
class WrkResult:
    connections: int
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non2xx: int
    socket_errors: dict[str, int]
    raw: str = field(repr=False, default="")

    @property
    def ok(self) -> bool:
        return self.non2xx == 0 and not any(self.socket_errors.values())


def citizen_codes(n: int = 1000) -> list[str]:
    """``n`` checksum-valid national codes, the same every run."""
    from dargah.core.identifiers import make_national_code

    rng = random.Random(1403)
    codes: list[str] = []
    while len(codes) < n:
        first9 = f"{rng.randrange(10**9):09d}"
        if len(set(first9)) > 1:
            codes.append(make_national_code(first9))
    return codes


def write_wrk_script(path: Path, token: str | None, prefix: str) -> Path:
    lines = []
    if token is not None:
        for k, v in call_headers(token).items():
            lines.append(f'wrk.headers["{k}"] = "{v}"')
    codes = citizen_codes()
    path.write_text(
        WRK_SCRIPT.format(
            headers="\n".join(lines),
            n=len(codes),
            prefix=prefix,
            codes=",".join(f'"{c}"' for c in codes),
        )
    )
    return path


def run_wrk(
    url: str, script: Path, connections: int, duration: float, timeout_s: float = 2.0
) -> WrkResult:
    argv = [
        WRK,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        f"--timeout={timeout_s:g}s",
        "-s",
        str(script),
        url,
    ]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    out = res.stdout + res.stderr
    m = re.search(r"^BENCH-JSON (\{.*\})$", out, re.M)
    if res.returncode != 0 or m is None:
        raise BenchError(f"`{' '.join(argv)}` failed ({res.returncode}):\n{out}")
    d = json.loads(m.group(1))
    # wrk's own line counts non-2xx/3xx answers; summary.errors.status is the same number
    non2xx = d["status"]
    m2 = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    if m2:
        non2xx = max(non2xx, int(m2.group(1)))
    secs = d["duration_us"] / 1e6
    return WrkResult(
        connections=connections,
        requests=d["requests"],
        rps=d["requests"] / secs if secs else 0.0,
        p50_ms=d["p50_us"] / 1000,
        p90_ms=d["p90_us"] / 1000,
        p99_ms=d["p99_us"] / 1000,
        max_ms=d["max_us"] / 1000,
        non2xx=non2xx,
        socket_errors={k: d[k] for k in ("connect", "read", "write", "timeout")},
        raw=out,
    )


@dataclass
class Target:
    name: str
    workers: int
    url: str
    script: Path
    proc: Proc  # the process group under test (the proxy, or the upstream itself)
    upstream: Proc | None = None  # the upstream behind it, if any
    loads: list[WrkResult] = field(default_factory=list)  # one per round
    singles: list[WrkResult] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)  # CPU us of ``proc`` per request, loaded
    upstream_cpus: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    # Over several rounds, the table shows the median round.
    @property
    def load(self) -> WrkResult | None:
        return _median(self.loads, lambda r: r.rps)

    @property
    def single(self) -> WrkResult | None:
        return _median(self.singles, lambda r: -r.p50_ms)

    @property
    def cpu_us(self) -> float:
        return sorted(self.cpus)[len(self.cpus) // 2] if self.cpus else 0.0


def _median(runs: list[WrkResult], key: Any) -> WrkResult | None:
    return sorted(runs, key=key)[len(runs) // 2] if runs else None


def measure(t: Target, args: argparse.Namespace, on_load_start: Any = None) -> None:
    print(
        f"- {t.name}: warm-up {args.warmup:g} s, {args.connections} connections "
        f"{args.duration:g} s, 1 connection {args.latency_duration:g} s "
        f"(load average {loadavg()})",
        flush=True,
    )
    if args.warmup > 0:
        run_wrk(t.url, t.script, args.connections, args.warmup)
    if on_load_start is not None:
        on_load_start()
    cpu0 = group_cpu_seconds(t.proc.popen.pid)
    up0 = group_cpu_seconds(t.upstream.popen.pid) if t.upstream else 0.0
    load = run_wrk(t.url, t.script, args.connections, args.duration)
    if load.requests:
        t.cpus.append((group_cpu_seconds(t.proc.popen.pid) - cpu0) / load.requests * 1e6)
        if t.upstream:
            t.upstream_cpus.append(
                (group_cpu_seconds(t.upstream.popen.pid) - up0) / load.requests * 1e6
            )
    single = run_wrk(t.url, t.script, 1, args.latency_duration)
    for r in (load, single):
        if not r.ok:
            errors = ", ".join(f"{k} {v}" for k, v in r.socket_errors.items() if v)
            raise BenchError(
                f"{t.name} at {r.connections} connection(s): {r.non2xx} non-2xx answers"
                f"{'; socket errors: ' + errors if errors else ''}\n{r.raw}"
            )
    t.loads.append(load)
    t.singles.append(single)
    print(
        f"    {load.rps:,.0f} req/s, p50 {load.p50_ms:.2f} ms at {args.connections}; "
        f"p50 {single.p50_ms:.3f} ms at 1",
        flush=True,
    )


# --------------------------------------------------------------------------- profiling

PROFILE_RATE = 200  # samples per second


def start_profile(bus: Proc, out: Path, seconds: float) -> subprocess.Popen[bytes] | None:
    """py-spy on one bus worker while the throughput load runs: collapsed stacks, per thread,
    aggregated by function, busy samples only (a thread waiting in epoll, on a lock or on the
    GIL is idle). ``--nonblocking`` so that sampling does not slow the worker down."""
    pyspy = shutil.which("py-spy", path=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
    if pyspy is None:
        print("  (py-spy is not installed: .venv/bin/pip install py-spy; no profile)")
        return None
    kids = [p for p in children(bus.popen.pid) if "spawn_main" in cmdline(p)]
    pid = kids[0] if kids else bus.popen.pid
    print(f"  profiling bus process {pid} (of {len(kids) or 1}) for {seconds:g} s -> {out}")
    return subprocess.Popen(
        [
            pyspy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, int(seconds))),
            "--rate",
            str(PROFILE_RATE),
            "--format",
            "raw",
            "--function",
            "--threads",
            "--nonblocking",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def profile_top(raw: Path, seconds: float, n: int = 15) -> str:
    """Top functions by own time (leaf frames) and each thread's busy share, from py-spy's
    collapsed stacks (``--threads``: the first frame names the thread)."""
    own: dict[tuple[str, str], int] = {}
    threads: dict[str, int] = {}
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread = "?"
        if frames[0].startswith("thread ("):
            thread = re.sub(r"^thread \(\d+\): ", "", frames[0])
        key = (thread, re.sub(r":\d+\)$", ")", frames[-1]))  # one row per function
        own[key] = own.get(key, 0) + int(count)
        threads[thread] = threads.get(thread, 0) + int(count)
        total += int(count)
    if not total:
        return "  (no samples)"
    expected = seconds * PROFILE_RATE
    lines = [f"  busy samples: {total}; per thread (share of wall time busy):"]
    lines += [
        f"    {name:<34} {c:6d}  {100 * c / expected:5.1f}%"
        for name, c in sorted(threads.items(), key=lambda kv: -kv[1])
    ]
    lines.append(f"  top {n} functions by own time (share of all busy samples):")
    lines += [
        f"  {100 * c / total:5.1f}%  [{thread[:18]}] {func}"
        for (thread, func), c in sorted(own.items(), key=lambda kv: -kv[1])[:n]
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- report


def machine_facts() -> dict[str, str]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    def version(argv: list[str]) -> str:
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        out = (r.stdout + r.stderr).strip()
        return out.splitlines()[0] if out else "?"

    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu or platform.processor() or "?",
        "kernel": platform.release(),
        "python": f"{platform.python_version()} ({sys.executable})",
        "bus python": version([str(VENV_BIN / "python"), "-V"]),
        "sqlite": sqlite3.sqlite_version,
        "nginx": version([NGINX, "-v"]),
        "wrk": version([WRK, "-v"]).split(" [")[0],
        "dargah": version([str(DARGAH), "--version"]),
        "loadavg": loadavg(),
    }


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


COLUMNS = (
    "target",
    "workers",
    "req/s @{c}",
    "p50 ms",
    "p99 ms",
    "CPU us/req",
    "req/s @1",
    "p50 ms",
    "p99 ms",
)
WIDTHS = (22, 7, 10, 7, 7, 10, 8, 7, 7)


def table(targets: list[Target], connections: int) -> str:
    def row(cells: Sequence[str]) -> str:
        out = [f"{cells[0]:<{WIDTHS[0]}}"]
        out += [f"{c:>{w}}" for c, w in zip(cells[1:], WIDTHS[1:], strict=True)]
        return "| " + " | ".join(out) + " |"

    lines = [
        row([c.format(c=connections) for c in COLUMNS]),
        "|" + "|".join("-" * (w + 2) for w in WIDTHS) + "|",
    ]
    for t in targets:
        if t.load is None or t.single is None:
            continue
        a, b = t.load, t.single
        lines.append(
            row(
                [
                    t.name,
                    str(t.workers),
                    f"{a.rps:,.0f}",
                    f"{a.p50_ms:.2f}",
                    f"{a.p99_ms:.2f}",
                    f"{t.cpu_us:.0f}",
                    f"{b.rps:,.0f}",
                    f"{b.p50_ms:.3f}",
                    f"{b.p99_ms:.3f}",
                ]
            )
        )
    return "\n".join(lines)


def verdicts(targets: list[Target], connections: int) -> tuple[list[str], bool]:
    """The bus against nginx, for each bus run; ``False`` when the default (process) run misses."""
    nginx = next((t for t in targets if t.name == "nginx proxy"), None)
    if nginx is None or nginx.load is None or nginx.single is None:
        return [], True
    lines: list[str] = []
    passed = True
    for t in targets:
        if not t.name.startswith("bus") or t.load is None or t.single is None:
            continue
        ratio = t.load.rps / nginx.load.rps
        added = t.single.p50_ms - nginx.single.p50_ms
        if ratio >= GOAL_RATIO:
            tp = "meets the goal (>= 1/3)"
        elif ratio >= FLOOR_RATIO:
            tp = "below the goal of 1/3, above the floor of 1/5"
        else:
            tp = "BELOW THE FLOOR of 1/5"
        lat = "meets the goal (<= 1 ms)" if added <= GOAL_ADDED_P50_MS else "OVER the goal of 1 ms"
        times = t.cpu_us / nginx.cpu_us if nginx.cpu_us else 0.0
        lines += [
            "",
            f"{t.name}: bus/nginx = {ratio:.2f} at {connections} connections: {tp}",
            f"{t.name}: added p50 at 1 connection = {added:+.3f} ms "
            f"({t.single.p50_ms:.3f} - {nginx.single.p50_ms:.3f}): {lat}",
            f"{t.name}: CPU per call {t.cpu_us:.0f} us in the bus's processes, "
            f"{nginx.cpu_us:.0f} us in nginx's ({times:.1f}x)",
            *(f"{t.name}: {note}" for note in t.notes),
        ]
        if t.name == "bus (process)" and (ratio < FLOOR_RATIO or added > GOAL_ADDED_P50_MS):
            passed = False
    return lines, passed


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = p.add_argument
    add("--duration", type=float, default=10, help="seconds of the throughput load (default 10)")
    add(
        "--latency-duration",
        type=float,
        default=5,
        help="seconds of the one-connection load (default 5)",
    )
    add("--warmup", type=float, default=2, help="seconds of warm-up per target (default 2)")
    add(
        "--connections",
        type=int,
        default=64,
        help="connections of the throughput load (default 64)",
    )
    add("--workers", type=int, default=2, help="bus worker processes (default 2)")
    add(
        "--nginx-workers",
        type=int,
        default=1,
        help="worker processes of each nginx, upstream and proxy (default 1)",
    )
    add(
        "--durability",
        choices=("process", "power", "both"),
        default="both",
        help="DARGAH_LOG_DURABILITY of the bus runs (default both: process, then power)",
    )
    add(
        "--profile",
        type=Path,
        default=None,
        metavar="FILE",
        help="record a py-spy profile (collapsed stacks) of one bus worker during the first bus "
        "throughput load into FILE, and print its top functions by own time",
    )
    add(
        "--rounds",
        type=int,
        default=1,
        help="measure every target this many times, interleaved; the table shows the median "
        "(default 1)",
    )
    add("--json", type=Path, default=None, metavar="FILE", help="also write the results as JSON")
    add(
        "--strict",
        action="store_true",
        help="exit 1 when the bus (process durability) is below the floor or adds over 1 ms",
    )
    return p.parse_args(argv)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _results_json(facts: dict[str, str], args: argparse.Namespace, targets: list[Target]) -> str:
    def run(r: WrkResult | None) -> dict[str, Any] | None:
        return None if r is None else {k: v for k, v in asdict(r).items() if k != "raw"}

    return json.dumps(
        {
            "machine": facts,
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "targets": [
                {
                    "name": t.name,
                    "workers": t.workers,
                    "cpu_us_per_request": t.cpus,
                    "upstream_cpu_us_per_request": t.upstream_cpus,
                    "notes": t.notes,
                    "load": [run(r) for r in t.loads],
                    "single": [run(r) for r in t.singles],
                }
                for t in targets
            ],
        },
        indent=2,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [
        tool for tool in (NGINX, WRK) if not (Path(tool).is_file() and os.access(tool, os.X_OK))
    ]
    if missing:
        print(f"missing: {', '.join(missing)}; {INSTALL_HINT}", file=sys.stderr)
        return 2
    if not DARGAH.exists():
        print(
            f"missing {DARGAH}: install the project into .venv first (pip install -e .)",
            file=sys.stderr,
        )
        return 2

    sys.path.insert(0, str(ROOT))
    from dargah.core.identifiers import is_national_code

    if not is_national_code(SUBJECT):
        print(f"{SUBJECT} is not a valid national code", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM must still run the cleanup below

    durabilities = ["process", "power"] if args.durability == "both" else [args.durability]
    per_target = args.warmup + args.duration + args.latency_duration
    estimate = per_target * (2 + len(durabilities)) * args.rounds + 10 + 5 * len(durabilities)
    print(f"Bus throughput benchmark (about {estimate:.0f} s)")
    facts = machine_facts()
    for k, v in facts.items():
        print(f"  {k:<11} {v}")
    print(
        f"  load        wrk -t1 -c{args.connections} -d{args.duration:g}s --latency, "
        f"then wrk -t1 -c1 -d{args.latency_duration:g}s --latency; "
        f"warm-up {args.warmup:g} s; response {len(BODY)} bytes of JSON; "
        f"{args.rounds} round(s)"
    )
    print(
        f"  workers     upstream nginx {args.nginx_workers}, nginx proxy {args.nginx_workers}, "
        f"bus {args.workers}; wrk 1 thread"
    )
    print(flush=True)

    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="dargah-bench-"))
    targets: list[Target] = []
    log_text: list[str] = []
    status = 0
    try:
        up_port, proxy_port = free_port(), free_port()
        up = start_nginx(
            procs,
            "upstream nginx",
            tmp / "upstream",
            args.nginx_workers,
            UPSTREAM_SERVER.format(port=up_port, json=BODY),
        )
        wait_http(f"http://127.0.0.1:{up_port}{UPSTREAM_PATH}", up)
        px = start_nginx(
            procs,
            "nginx proxy",
            tmp / "proxy",
            args.nginx_workers,
            PROXY_SERVER.format(port=proxy_port, upstream_port=up_port),
        )
        wait_http(f"http://127.0.0.1:{proxy_port}{UPSTREAM_PATH}", px)

        print("Making a fresh bus instance with the dargah CLI ...", flush=True)
        home = tmp / "home"
        secret = make_instance(home, up_port)

        # nginx gets the same request headers as the bus (a dummy token of similar length)
        dummy = write_wrk_script(
            tmp / "headers-dummy.lua", "x" * 200, UPSTREAM_PATH.rsplit("/", 1)[0] + "/"
        )
        targets.append(
            Target(
                "direct upstream",
                args.nginx_workers,
                f"http://127.0.0.1:{up_port}{UPSTREAM_PATH}",
                dummy,
                up,
            )
        )
        targets.append(
            Target(
                "nginx proxy",
                args.nginx_workers,
                f"http://127.0.0.1:{proxy_port}{UPSTREAM_PATH}",
                dummy,
                px,
                up,
            )
        )
        # one bus per log durability, on the same home (like several bus processes of one
        # instance); each is idle while the others are measured
        buses = [start_bus(procs, tmp, home, up, secret, d, args) for d in durabilities]
        targets += buses

        for rnd in range(1, args.rounds + 1):
            print(f"Round {rnd} of {args.rounds}:" if args.rounds > 1 else "Measuring:")
            for t in targets:
                hook = None
                if rnd == 1 and t is buses[0] and args.profile is not None:
                    hook = functools.partial(_profile_during_load, t, args)
                try:
                    measure(t, args, hook)
                finally:
                    _finish_profile(t)

        for bus in buses:
            batch = group_commit_sizes(bus.url.split("/r1/")[0])
            if batch:
                bus.notes.append(f"records per group commit, per worker (whole run): {batch}")
            procs.stop(bus.proc)  # a clean stop: the log is sealed
        log_text = check_log(home, buses)
    except BenchError as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything", file=sys.stderr)
        status = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    facts["loadavg after"] = loadavg()
    if any(t.load is not None for t in targets):
        what = "Partial results" if status else "Results"
        rounds = f"median of {args.rounds} rounds; " if args.rounds > 1 else ""
        print(
            f"\n{what} (127.0.0.1, wrk 1 thread; {rounds}CPU us/req: the target's own "
            f"processes, all threads, under the {args.connections}-connection load)\n"
        )
        print(table(targets, args.connections))
        lines, passed = verdicts(targets, args.connections)
        print("\n".join(lines))
        if status == 0:
            print("\n" + "\n".join(log_text))
            print(
                "\ngoals: bus >= 1/3 of nginx's throughput (floor 1/5); bus adds <= 1 ms p50 at "
                "one connection"
            )
            print(f"load average before {facts['loadavg']}, after {facts['loadavg after']}")
            if args.strict and not passed:
                status = 1
    if args.profile is not None and args.profile.exists() and args.profile.stat().st_size:
        print(
            f"\nprofile of one bus worker ({args.profile}, py-spy, {args.duration - 1:g} s "
            f"of the first {args.connections}-connection load):"
        )
        print(profile_top(args.profile, args.duration - 1))
    if args.json is not None:
        args.json.write_text(_results_json(facts, args, targets))
    return status


_profilers: dict[int, subprocess.Popen[bytes]] = {}


def _profile_during_load(t: Target, args: argparse.Namespace) -> None:
    spy = start_profile(t.proc, args.profile, args.duration - 1)
    if spy is not None:
        _profilers[id(t)] = spy


def _finish_profile(t: Target) -> None:
    spy = _profilers.pop(id(t), None)
    if spy is None:
        return
    try:
        _, err = spy.communicate(timeout=60)
        if spy.returncode != 0:
            print(f"  py-spy failed: {err.decode(errors='replace')[-500:]}")
    except subprocess.TimeoutExpired:
        os.killpg(spy.pid, signal.SIGKILL)
        spy.wait()


def start_bus(
    procs: Processes,
    tmp: Path,
    home: Path,
    up: Proc,
    secret: str,
    durability: str,
    args: argparse.Namespace,
) -> Target:
    """``dargah serve bus`` with one log durability, ready, with a token and one good call."""
    port = free_port()
    name = f"bus ({durability})"
    bus = procs.start(
        name,
        [
            str(DARGAH),
            "serve",
            "bus",
            "--home",
            str(home),
            "--port",
            str(port),
            "--workers",
            str(args.workers),
        ],
        tmp / f"bus-{durability}.log",
        env=bus_env(DARGAH_LOG_DURABILITY=durability),
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/readyz", bus, timeout=60)
    token = get_token(base, secret)
    preflight_bus(base, token)
    return Target(
        name,
        args.workers,
        base + BUS_PATH,
        write_wrk_script(tmp / f"bus-{durability}.lua", token, BUS_PATH.rsplit("/", 1)[0] + "/"),
        bus,
        up,
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


def check_log(home: Path, buses: list[Target]) -> list[str]:
    """The message log after all buses stopped: one record per answered call, gap-free, sealed."""
    n, top, seals = log_counts(home)
    answered = sum(r.requests for t in buses for r in (*t.loads, *t.singles))
    lines = [
        f"message log: {n} records (SELECT COUNT(*), MAX(seq) FROM message_log: {n}, {top}; "
        f"{'gap-free' if n == top else 'NOT gap-free'}), {seals} seals; wrk counted {answered} "
        f"measured answers from the bus (the rest: warm-ups and the calls in flight when wrk "
        f"stopped)",
        f"message log: {log_verify(home)}",
    ]
    if n < answered or n != top:
        raise BenchError("\n".join(lines))
    return lines


if __name__ == "__main__":
    sys.exit(main())
