"""The bus over TLS against nginx over TLS, on loopback: per-call CPU and handshakes per second.

Targets, each server process pinned to one core (``taskset``), the same self-signed P-256
certificate for both TLS servers:

1. nginx as a TLS-terminating reverse proxy (``worker_processes 1``, upstream keep-alive) to
   an nginx upstream answering a fixed 246-byte JSON body: the reference;
2. the bus over TLS (``dargah serve bus --workers 1`` with ``DARGAH_TLS_CERT_FILE``), full
   policy and the durable message log on every call, as in bench/bus_throughput.py;
3. the same bus over plain HTTP, to show what TLS adds to the bus's own cost.

Each gets ``wrk`` (one thread, on another core) with keep-alive connections (``-c N``): the
server's CPU per call comes from its process group's CPU time over the load divided by the
calls answered. Then handshakes: ``wrk`` with ``Connection: close`` on a trivial address
(nginx ``return 200``; the bus's ``/healthz``), so that every request is a new TCP
connection and a full TLS handshake (wrk does not resume sessions): answers per second are
handshakes per second, and CPU per answer is mostly the handshake's.

Usage::

    .venv/bin/python bench/bus_tls.py [--duration S] [--connections N] [--rounds R]

Everything runs on 127.0.0.1 in a temporary directory removed at the end; every process
started is stopped. Figures on a shared machine are noisy: compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import ssl
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from _bus import bus_env, get_token, make_instance
from _config import (
    BODY,
    BUS_PATH,
    CLIENT,
    DARGAH,
    NGINX,
    NGINX_COMMON,
    UPSTREAM_PATH,
    UPSTREAM_SERVER,
)
from _procs import BenchError, Proc, Processes, free_port, group_cpu_seconds, wait_http
from _wrk import WRK_SCRIPT, WrkResult, run_wrk, write_wrk_script

from dargah.core.certs import self_signed
from dargah.core.keys import generate_p256, private_pem

TLS_PROXY = """\
    upstream provider {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    server {{
        listen 127.0.0.1:{port} ssl reuseport;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location = /healthz {{ return 200 'ok'; }}
        location / {{
            proxy_pass http://provider;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;
        }}
    }}"""

CLOSE_SCRIPT = (
    'wrk.method = "GET"\nwrk.headers["Connection"] = "close"\n'
    + ("function done" + WRK_SCRIPT.split("function done", 1)[1]).format()
)


@dataclass
class Figures:
    name: str
    calls: list[tuple[float, float]] = field(default_factory=list)  # (calls/s, CPU us/call)
    handshakes: list[tuple[float, float]] = field(default_factory=list)

    @staticmethod
    def median(runs: list[tuple[float, float]]) -> tuple[float, float]:
        return sorted(runs)[len(runs) // 2] if runs else (0.0, 0.0)


def pinned(core: int, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *argv]


def start_nginx(procs: Processes, name: str, prefix: Path, core: int, server: str) -> Proc:
    prefix.mkdir(parents=True)
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_COMMON.format(workers=1, prefix=prefix, body=server))
    argv = [NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    return procs.start(name, pinned(core, [*argv, "-g", "daemon off;"]), prefix / "stdout.log")


def https_json(url: str, ca: Path, data: dict[str, str]) -> dict[str, object]:
    ctx = ssl.create_default_context(cafile=str(ca))
    req = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:  # loopback only
        return dict(json.loads(resp.read()))


def wait_https(url: str, proc: Proc, ca: Path) -> None:
    ctx = ssl.create_default_context(cafile=str(ca))
    for _ in range(600):
        if proc.popen.poll() is not None:
            raise BenchError(f"{proc.name} exited:\n{proc.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"{proc.name} not ready at {url}")


def load(
    url: str, script: Path, proc: Proc, connections: int, duration: float
) -> tuple[float, float]:
    """(answers per second, the server's CPU µs per answer) under ``wrk``."""
    cpu0 = group_cpu_seconds(proc.popen.pid)
    r: WrkResult = run_wrk(url, script, connections, duration)
    if not r.ok or not r.requests:
        raise BenchError(f"{url}: {r.non2xx} non-2xx, errors {r.socket_errors}\n{r.raw}")
    return r.rps, (group_cpu_seconds(proc.popen.pid) - cpu0) / r.requests * 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--duration", type=float, default=8, help="seconds per load (default 8)")
    p.add_argument("--connections", type=int, default=32, help="keep-alive connections")
    p.add_argument("--handshake-connections", type=int, default=16)
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds; medians shown")
    args = p.parse_args()
    for tool in (NGINX, "wrk", "taskset"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is missing: apt-get install -y nginx-light wrk util-linux")
    cores = os.sched_getaffinity(0)
    server_core, client_core = (max(cores), min(cores)) if len(cores) > 1 else (0, 0)
    tmp = Path(tempfile.mkdtemp(prefix="dargah-bench-tls-"))
    procs = Processes()
    try:
        key = generate_p256()
        cert, key_file = tmp / "server.crt", tmp / "server.key"
        cert.write_bytes(self_signed("127.0.0.1", key, hosts=["127.0.0.1"]))
        key_file.write_bytes(private_pem(key))
        up_port, px_port = free_port(), free_port()
        up = start_nginx(
            procs,
            "upstream",
            tmp / "upstream",
            client_core,
            UPSTREAM_SERVER.format(port=up_port, json=BODY),
        )
        wait_http(f"http://127.0.0.1:{up_port}{UPSTREAM_PATH}", up)
        px = start_nginx(
            procs,
            "nginx over TLS",
            tmp / "proxy",
            server_core,
            TLS_PROXY.format(port=px_port, upstream_port=up_port, cert=cert, key=key_file),
        )
        wait_https(f"https://127.0.0.1:{px_port}{UPSTREAM_PATH}", px, cert)
        home = tmp / "home"
        secret = make_instance(home, up_port)
        close_script = tmp / "close.lua"
        close_script.write_text(CLOSE_SCRIPT)
        figures = {n: Figures(n) for n in ("nginx over TLS", "bus over TLS", "bus, plain HTTP")}
        prefix = BUS_PATH.rsplit("/", 1)[0] + "/"
        nginx_script = write_wrk_script(
            tmp / "nginx.lua", "x" * 200, UPSTREAM_PATH.rsplit("/", 1)[0] + "/"
        )
        print(
            f"server core {server_core}, wrk and upstream core {client_core}; "
            f"{args.connections} keep-alive connections, {args.duration:g} s per load",
            flush=True,
        )
        for rnd in range(args.rounds):
            nginx_url = f"https://127.0.0.1:{px_port}"
            figures["nginx over TLS"].calls.append(
                load(nginx_url + UPSTREAM_PATH, nginx_script, px, args.connections, args.duration)
            )
            figures["nginx over TLS"].handshakes.append(
                load(
                    nginx_url + "/healthz",
                    close_script,
                    px,
                    args.handshake_connections,
                    args.duration,
                )
            )
            for tls in (True, False):
                name = "bus over TLS" if tls else "bus, plain HTTP"
                port = free_port()
                scheme = "https" if tls else "http"
                env = bus_env(
                    DARGAH_PUBLIC_URL=f"{scheme}://127.0.0.1:{port}",
                    **(
                        {"DARGAH_TLS_CERT_FILE": str(cert), "DARGAH_TLS_KEY_FILE": str(key_file)}
                        if tls
                        else {}
                    ),
                )
                bus = procs.start(
                    name,
                    pinned(
                        server_core,
                        [str(DARGAH), "serve", "bus", "--home", str(home), "--port", str(port)],
                    ),
                    tmp / f"bus-{rnd}-{scheme}.log",
                    env=env,
                )
                base = f"{scheme}://127.0.0.1:{port}"
                if tls:
                    wait_https(f"{base}/readyz", bus, cert)
                else:
                    wait_http(f"{base}/readyz", bus, timeout=60)
                form = {
                    "grant_type": "client_credentials",
                    "client_id": CLIENT,
                    "client_secret": secret,
                }
                if tls:
                    token = str(https_json(f"{base}/oauth/token", cert, form)["access_token"])
                else:
                    token = get_token(base, secret)
                script = write_wrk_script(tmp / f"bus-{scheme}.lua", token, prefix)
                run_wrk(base + BUS_PATH, script, args.connections, 2)  # warm-up
                figures[name].calls.append(
                    load(base + BUS_PATH, script, bus, args.connections, args.duration)
                )
                if tls:
                    figures[name].handshakes.append(
                        load(
                            f"{base}/healthz",
                            close_script,
                            bus,
                            args.handshake_connections,
                            args.duration,
                        )
                    )
                procs.stop(bus)
        print()
        print(
            f"| target | calls/s ({args.connections} conns) | server CPU µs/call "
            "| handshakes/s | server CPU µs/handshake |"
        )
        print("|---|---:|---:|---:|---:|")
        for f in figures.values():
            rps, cpu = Figures.median(f.calls)
            hs, hcpu = Figures.median(f.handshakes)
            hs_cells = f"{hs:,.0f} | {hcpu:,.0f}" if f.handshakes else "- | -"
            print(f"| {f.name} | {rps:,.0f} | {cpu:,.0f} | {hs_cells} |")
        bus_tls, bus_plain, ngx = (
            Figures.median(figures[n].calls)
            for n in ("bus over TLS", "bus, plain HTTP", "nginx over TLS")
        )
        print()
        print(
            f"TLS adds {bus_tls[1] - bus_plain[1]:,.0f} µs of the bus's CPU per call "
            f"({bus_tls[1] / bus_plain[1]:.2f}x plain); bus over TLS / nginx over TLS: "
            f"{bus_tls[1] / ngx[1]:.1f}x the CPU per call"
        )
        hb, hn = (
            Figures.median(figures["bus over TLS"].handshakes),
            Figures.median(figures["nginx over TLS"].handshakes),
        )
        print(f"handshakes per second, bus / nginx: {hb[0] / hn[0]:.2f}")
        return 0
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
