"""Bus nodes on one PostgreSQL database against one node on SQLite and nginx, in one run.

Every node is ``dargah serve bus --workers 1`` with a home of its own, all on one fresh
PostgreSQL schema (``synchronous_commit`` as the server has it, on by default), each writing a
message-log chain of its own (``DARGAH_LOG_CHAINS=auto``). Measured, in this order:

1. nginx as a reverse proxy to an nginx upstream (the reference), and one SQLite bus node;
2. one PostgreSQL commit (an INSERT and COMMIT of one small row, one connection);
3. 1, 2 and 3 PostgreSQL nodes under the same total load (``wrk`` per node, the connections
   split between them): throughput, p50/p99, records per group commit (the nodes'
   ``/metrics``), and how often a session of the log waited for a lock (``pg_stat_activity``
   sampled every 20 ms);
4. two nodes sharing one chain (``DARGAH_LOG_CHAINS=single``, the design before chains), the
   same way, for comparison;
5. a frozen node: node 2 stopped with SIGSTOP while both nodes are loaded; node 1's latency
   meanwhile, with a chain per node and with one shared chain.

Usage::

    .venv/bin/python bench/cluster_throughput.py [--duration S] [--connections N]
    .venv/bin/python bench/cluster_throughput.py --one-node --rounds 3 --cores 1,0

``--one-node`` measures only what a node costs per core: the SQLite node and one PostgreSQL
node, loaded in turn ``--rounds`` times (each round both), with one commit measured between
them; ``--cores TARGET,LOAD`` pins each node (its event loop and its threads) alone on core
TARGET and wrk and nginx on core LOAD (the PostgreSQL server is not pinned: it is shared).
``--profile DIR`` records the PostgreSQL node with py-spy during its first load.

The machine running it also runs PostgreSQL, nginx and wrk: on a small or shared machine the
figures are noisy; compare the ratios within one run. Everything runs on 127.0.0.1; the
schema and temporary homes are removed and every process started is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from _bus import bus_env, get_token, make_instance, preflight_bus, start_nginx
from _cluster import LockSampler, checked, parallel, pg_commit_ms, thread_cpu
from _config import BODY, BUS_PATH, DARGAH, NGINX, PROXY_SERVER, UPSTREAM_PATH, UPSTREAM_SERVER, WRK
from _procs import BenchError, Proc, Processes, free_port, group_cpu_seconds, http, wait_http
from _profile import profile_steps, profile_top, start_profile
from _report import loadavg, machine_facts
from _wrk import WrkResult, pinned, run_wrk, write_wrk_script

PG_URL = os.environ.get("DARGAH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class Node:
    name: str
    url: str
    script: Path
    proc: Proc


@dataclass
class Row:
    name: str
    nodes: int
    load: list[WrkResult]
    single: WrkResult | None = None
    per_commit: str = ""
    lock_waits: str = ""
    cpu_us: float = 0.0  # CPU of the nodes' processes per request, under the load
    notes: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return sum(r.rps for r in self.load)


class _Done(Exception):
    """--one-node: measured; on to the report."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--duration", type=float, default=8, help="seconds of each load (default 8)")
    p.add_argument("--latency-duration", type=float, default=5, help="one-connection load (5)")
    p.add_argument("--warmup", type=float, default=2, help="warm-up per target (default 2)")
    p.add_argument("--connections", type=int, default=32, help="total connections (default 32)")
    p.add_argument("--freeze", type=float, default=4, help="seconds a node is frozen (default 4)")
    p.add_argument("--pg-url", default=PG_URL, help="PostgreSQL database to make a schema in")
    p.add_argument(
        "--one-node",
        action="store_true",
        help="only the SQLite node and one PostgreSQL node (CPU per request, 1-conn latency)",
    )
    p.add_argument("--rounds", type=int, default=1, help="--one-node: rounds of both (default 1)")
    p.add_argument(
        "--cores",
        default="none",
        help="TARGET,LOAD: each node on core TARGET, wrk and nginx on LOAD (default none)",
    )
    p.add_argument("--profile", type=Path, help="py-spy the PostgreSQL node into this folder")
    args = p.parse_args(argv)
    args.target_core = args.load_core = None
    if args.cores.strip().lower() != "none":
        try:
            args.target_core, args.load_core = (int(c) for c in args.cores.split(","))
        except ValueError:
            p.error(f"--cores {args.cores!r}: give TARGET,LOAD (for example 1,0) or none")
        allowed = os.sched_getaffinity(0)
        if args.target_core == args.load_core or not {args.target_core, args.load_core} <= allowed:
            p.error(f"--cores {args.cores!r}: two distinct cores of {sorted(allowed)} are needed")
        if shutil.which("taskset") is None:
            p.error("--cores needs taskset (util-linux)")
    return args


def commits(node: Node) -> tuple[float, float]:
    _, _, body = http("GET", node.url.split("/r1/")[0] + "/metrics", timeout=5)
    text = body.decode(errors="replace")
    m1 = re.search(r"^gsb_log_records_committed\S*\s+([0-9.e+]+)", text, re.M)
    m2 = re.search(r"^gsb_log_batches_committed\S*\s+([0-9.e+]+)", text, re.M)
    return (float(m1.group(1)) if m1 else 0.0, float(m2.group(1)) if m2 else 0.0)


def start_node(
    procs: Processes,
    tmp: Path,
    name: str,
    home: Path,
    env: dict[str, str],
    secret: str,
    core: int | None = None,
) -> Node:
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [str(DARGAH), "serve", "bus", "--home", str(home), "--port", str(port)]
    proc = procs.start(
        name,
        pinned(core, [*argv, "--workers", "1"]),
        tmp / f"{name}.log",
        env=bus_env(**env),
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/readyz", proc, timeout=60)
    token = get_token(base, secret)
    preflight_bus(base, token)
    prefix = BUS_PATH.rsplit("/", 1)[0] + "/"
    return Node(name, base + BUS_PATH, write_wrk_script(tmp / f"{name}.lua", token, prefix), proc)


def measure_nodes(
    name: str,
    nodes: list[Node],
    args: argparse.Namespace,
    sampler: LockSampler | None,
    single: bool = True,
    profile: Path | None = None,
) -> Row:
    per = max(1, args.connections // len(nodes))
    core = args.load_core
    print(f"- {name}: {len(nodes)} node(s), {per} connections each (load {loadavg()})", flush=True)
    parallel([partial(run_wrk, n.url, n.script, per, args.warmup, core=core) for n in nodes])
    before = [commits(n) for n in nodes]
    cpu0 = sum(group_cpu_seconds(n.proc.popen.pid) for n in nodes)
    threads0 = thread_cpu(nodes[0].proc.popen.pid)
    spy = start_profile(nodes[0].proc, profile, args.duration) if profile else None
    load = [partial(run_wrk, n.url, n.script, per, args.duration, core=core) for n in nodes]
    if sampler is not None:
        with sampler:
            loads = parallel(load)
        waits = sampler.summary()
    else:
        loads = parallel(load)
        waits = ""
    cpu = sum(group_cpu_seconds(n.proc.popen.pid) for n in nodes) - cpu0
    threads = thread_cpu(nodes[0].proc.popen.pid)
    main_thread = threads.get(nodes[0].proc.popen.pid, 0.0) - threads0.get(
        nodes[0].proc.popen.pid, 0.0
    )
    others = sum(threads.values()) - sum(threads0.get(t, 0.0) for t in threads) - main_thread
    if spy is not None and profile is not None:
        spy.wait(timeout=60)
        print(profile_top(profile, args.duration, 25))
        print(profile_steps(profile))
    after = [commits(n) for n in nodes]
    for n, r in zip(nodes, loads, strict=True):
        checked(r, n.name)
    sizes = [
        f"{(a[0] - b[0]) / (a[1] - b[1]):.1f}" if a[1] > b[1] else "-"
        for a, b in zip(after, before, strict=True)
    ]
    row = Row(name, len(nodes), loads, per_commit=", ".join(sizes), lock_waits=waits)
    done = sum(r.requests for r in loads)
    row.cpu_us = cpu / done * 1e6 if done else 0.0
    if done:
        row.notes.append(
            f"main thread {main_thread / loads[0].requests * 1e6:.0f} us/req, "
            f"other threads {others / loads[0].requests * 1e6:.0f} us/req"
        )
    if single:
        one = run_wrk(nodes[0].url, nodes[0].script, 1, args.latency_duration, core=core)
        row.single = checked(one, name)
    p50 = max(r.p50_ms for r in loads)
    print(
        f"    {row.rps:,.0f} req/s, p50 {p50:.2f} ms (slowest node), CPU {row.cpu_us:.0f} us/req"
        + (f" ({row.notes[0]}, node 1)" if row.notes else "")
        + (f", 1-conn p50 {row.single.p50_ms:.3f} ms" if row.single else ""),
        flush=True,
    )
    return row


def frozen(name: str, a: Node, b: Node, args: argparse.Namespace) -> str:
    """Node a's latency while node b, loaded as well, is stopped with SIGSTOP again and again
    (0.6 s stopped, 0.1 s running: whether a stop finds a node mid-commit is chance)."""
    per = max(1, args.connections // 2)
    print(f"- {name}: {b.name} frozen for {args.freeze:g} s", flush=True)
    steady = parallel([partial(run_wrk, n.url, n.script, per, args.freeze) for n in (a, b)])[0]
    load_b = threading.Thread(
        target=run_wrk, args=(b.url, b.script, per, args.freeze + 1), kwargs={"timeout_s": 10}
    )
    load_b.start()
    time.sleep(0.5)
    stopping = threading.Event()
    stops = [0]

    def freeze() -> None:
        while not stopping.is_set():
            os.killpg(b.proc.popen.pid, signal.SIGSTOP)
            stops[0] += 1
            time.sleep(0.6)
            os.killpg(b.proc.popen.pid, signal.SIGCONT)
            time.sleep(0.1)

    freezer = threading.Thread(target=freeze)
    freezer.start()
    try:
        during = run_wrk(a.url, a.script, per, args.freeze, timeout_s=10)
    finally:
        stopping.set()
        freezer.join()
        os.killpg(b.proc.popen.pid, signal.SIGCONT)
    load_b.join()
    return (
        f"{name}: {a.name} before: {steady.rps:,.0f} req/s, p50 {steady.p50_ms:.2f} ms, "
        f"p99 {steady.p99_ms:.2f} ms, max {steady.max_ms:.0f} ms; while {b.name} was stopped "
        f"{stops[0]} times: {during.rps:,.0f} req/s, p50 {during.p50_ms:.2f} ms, "
        f"p99 {during.p99_ms:.2f} ms, max {during.max_ms:.0f} ms, {during.non2xx} non-2xx, "
        f"socket errors {sum(during.socket_errors.values())}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in (NGINX, WRK):
        if not (Path(tool).is_file() and os.access(tool, os.X_OK)):
            print(f"missing {tool}", file=sys.stderr)
            return 2
    import psycopg

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    print("Bus nodes on PostgreSQL against SQLite and nginx")
    for k, v in machine_facts().items():
        print(f"  {k:<11} {v}")
    schema = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(args.pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        sync = conn.execute("SHOW synchronous_commit").fetchone()
    sep = "&" if "?" in args.pg_url else "?"
    url = f"{args.pg_url}{sep}options=-csearch_path%3D{schema}&application_name={schema}"
    print(f"  postgres    synchronous_commit={sync[0] if sync else '?'}, schema {schema}\n")
    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="dargah-cluster-"))
    rows: list[Row] = []
    lines: list[str] = []
    status = 0
    try:
        up_port, proxy_port = free_port(), free_port()
        up = start_nginx(
            procs,
            "upstream",
            tmp / "up",
            1,
            UPSTREAM_SERVER.format(port=up_port, json=BODY),
            args.load_core,
        )
        wait_http(f"http://127.0.0.1:{up_port}{UPSTREAM_PATH}", up)
        px = start_nginx(
            procs,
            "nginx proxy",
            tmp / "px",
            1,
            PROXY_SERVER.format(port=proxy_port, upstream_port=up_port),
            args.load_core,
        )
        wait_http(f"http://127.0.0.1:{proxy_port}{UPSTREAM_PATH}", px)
        dummy = write_wrk_script(
            tmp / "dummy.lua", "x" * 200, UPSTREAM_PATH.rsplit("/", 1)[0] + "/"
        )
        proxy = Node("nginx", f"http://127.0.0.1:{proxy_port}{UPSTREAM_PATH}", dummy, px)

        print("Making the instances with the dargah CLI ...", flush=True)
        sqlite_secret = make_instance(tmp / "sqlite", up_port)
        pg_env = {"DARGAH_DATABASE_URL": url}
        pg_secret = make_instance(tmp / "pg-1", up_port, env=pg_env)
        core = args.target_core
        sqlite_node = start_node(procs, tmp, "sqlite-node", tmp / "sqlite", {}, sqlite_secret, core)
        nodes = [
            start_node(
                procs,
                tmp,
                f"pg-node-{i}",
                tmp / f"pg-{i}",
                {**pg_env, "DARGAH_NODE_NAME": f"n{i}"},
                pg_secret,
                core,
            )
            for i in ((1,) if args.one_node else (1, 2, 3))
        ]
        sampler = LockSampler(args.pg_url, schema)

        print("Measuring:")
        rows.append(measure_nodes("nginx proxy", [proxy], args, None))
        if args.one_node:
            if args.profile:
                args.profile.mkdir(parents=True, exist_ok=True)
            for i in range(args.rounds):
                rows.append(measure_nodes("bus on SQLite, 1 node", [sqlite_node], args, None))
                commit_p50, commit_p99 = pg_commit_ms(url)
                lines.append(
                    f"round {i + 1}: one PostgreSQL commit (INSERT + COMMIT): "
                    f"p50 {commit_p50:.3f} ms, p99 {commit_p99:.3f} ms"
                )
                spy = args.profile / f"pg-node-{i + 1}.txt" if args.profile and i == 0 else None
                name = "bus on PostgreSQL, 1 node(s)"
                rows.append(measure_nodes(name, nodes, args, sampler, profile=spy))
                on_sqlite, on_pg = rows[-2], rows[-1]
                assert on_pg.single is not None
                lines.append(
                    f"round {i + 1}: CPU us/req PostgreSQL {on_pg.cpu_us:.0f}, SQLite "
                    f"{on_sqlite.cpu_us:.0f}: per core {on_sqlite.cpu_us / on_pg.cpu_us:.3f}; "
                    f"1-conn p50 PostgreSQL {on_pg.single.p50_ms:.3f} ms = one commit + "
                    f"{on_pg.single.p50_ms - commit_p50:.3f} ms"
                )
            ratios = [a.cpu_us / b.cpu_us for a, b in zip(rows[1::2], rows[2::2], strict=True)]
            pin = f" (nodes on core {core}, wrk and nginx on {args.load_core})"
            lines.append(
                f"median of {len(ratios)} round(s): per core {statistics.median(ratios):.3f}"
                + (pin if core is not None else "")
            )
            raise _Done
        rows.append(measure_nodes("bus on SQLite, 1 node", [sqlite_node], args, None))
        commit_p50, commit_p99 = pg_commit_ms(url)
        lines.append(
            f"one PostgreSQL commit (INSERT + COMMIT): p50 {commit_p50:.3f} ms, p99 {commit_p99:.3f} ms"
        )
        for count in (1, 2, 3):
            name = f"bus on PostgreSQL, {count} node(s)"
            rows.append(measure_nodes(name, nodes[:count], args, sampler, count == 1))
        procs.stop(nodes[2].proc)
        lines.append(frozen("a chain per node", nodes[0], nodes[1], args))

        shared_env = {**pg_env, "DARGAH_LOG_CHAINS": "single"}
        shared = [
            start_node(procs, tmp, f"shared-node-{i}", tmp / f"shared-{i}", shared_env, pg_secret)
            for i in (1, 2)
        ]
        procs.stop(nodes[0].proc)
        procs.stop(nodes[1].proc)
        rows.append(
            measure_nodes(
                "bus on PostgreSQL, 2 nodes, one shared chain", shared, args, sampler, False
            )
        )
        lines.append(frozen("one shared chain", shared[0], shared[1], args))
        for n in shared:
            procs.stop(n.proc)
        procs.stop(sqlite_node.proc)
        res = subprocess.run(
            [str(DARGAH), "log", "verify", "--home", str(tmp / "pg-1")],
            capture_output=True,
            text=True,
            timeout=600,
            env=bus_env(**pg_env),
        )
        lines.append(f"dargah log verify (PostgreSQL instance): exit {res.returncode}")
        lines += ["    " + line for line in res.stdout.strip().splitlines()[:12]]
    except _Done:
        pass
    except BenchError as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        status = 130
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
        with psycopg.connect(args.pg_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    if rows:
        ref = rows[0].rps
        print(
            "\n| target | nodes | req/s | / nginx | p50 ms | p99 ms | p50 ms at 1 conn"
            " | records per commit | samples with a lock wait | CPU us/req |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            p50 = max(x.p50_ms for x in r.load)
            p99 = max(x.p99_ms for x in r.load)
            one = f"{r.single.p50_ms:.3f}" if r.single else "-"
            print(
                f"| {r.name} | {r.nodes} | {r.rps:,.0f} | {r.rps / ref:.3f} | {p50:.2f} | {p99:.2f}"
                f" | {one} | {r.per_commit or '-'} | {r.lock_waits or '-'} | {r.cpu_us:.0f} |"
            )
        by = {r.name: r for r in rows}
        sq, pg1 = by.get("bus on SQLite, 1 node"), by.get("bus on PostgreSQL, 1 node(s)")
        if sq and pg1 and sq.single and pg1.single and rows[0].single:
            print(
                f"\nPostgreSQL node / SQLite node (nginx-normalised, one worker each): {pg1.rps / sq.rps:.3f}"
            )
            added = pg1.single.p50_ms - rows[0].single.p50_ms
            added_sq = sq.single.p50_ms - rows[0].single.p50_ms
            print(
                f"p50 added over nginx at one connection: PostgreSQL node {added:.3f} ms, "
                f"SQLite node {added_sq:.3f} ms"
            )
            if sq.cpu_us and pg1.cpu_us:
                print(
                    "CPU of the bus per request, PostgreSQL node / SQLite node: "
                    f"{pg1.cpu_us:.0f} / {sq.cpu_us:.0f} us = {sq.cpu_us / pg1.cpu_us:.3f} "
                    "(requests per core, PostgreSQL node / SQLite node)"
                )
        print("\n" + "\n".join(lines))
        print(f"load average at the end {loadavg()}")
    return status


if __name__ == "__main__":
    sys.exit(main())
