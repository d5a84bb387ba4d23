"""Bus throughput and latency against nginx, on loopback, in one bounded run.

The headline is per core: one nginx worker and one bus process, each pinned alone on one
core (``--cores TARGET,LOAD``, default 1,0) and loaded in turn, with wrk and the upstream
pinned on the other core; calls/s and CPU per call of both, in the same run. The bus with
``--workers W`` processes against nginx, neither pinned, is a secondary line (``--cores
none``: only that, as before).

The targets get the same load from ``wrk`` (one thread):

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
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from _bus import (
    check_log,
    group_commit_sizes,
    make_instance,
    start_bus,
    start_nginx,
)
from _config import (
    BODY,
    DARGAH,
    INSTALL_HINT,
    NGINX,
    PROXY_SERVER,
    ROOT,
    SUBJECT,
    UPSTREAM_PATH,
    UPSTREAM_SERVER,
    WRK,
)
from _procs import (
    BenchError,
    Processes,
    free_port,
    group_cpu_seconds,
    wait_http,
)
from _profile import profile_steps, profile_top, start_profile
from _report import loadavg, machine_facts, table, verdicts
from _wrk import Target, WrkResult, run_wrk, write_wrk_script

# --------------------------------------------------------------------------- the bus


# --------------------------------------------------------------------------- wrk


def measure(t: Target, args: argparse.Namespace, on_load_start: Any = None) -> None:
    print(
        f"- {t.name}: warm-up {args.warmup:g} s, {args.connections} connections "
        f"{args.duration:g} s, 1 connection {args.latency_duration:g} s "
        f"(load average {loadavg()})",
        flush=True,
    )
    if args.warmup > 0:
        run_wrk(t.url, t.script, args.connections, args.warmup, core=t.wrk_core)
    if on_load_start is not None:
        on_load_start()
    cpu0 = group_cpu_seconds(t.proc.popen.pid)
    up0 = group_cpu_seconds(t.upstream.popen.pid) if t.upstream else 0.0
    load = run_wrk(t.url, t.script, args.connections, args.duration, core=t.wrk_core)
    if load.requests:
        t.cpus.append((group_cpu_seconds(t.proc.popen.pid) - cpu0) / load.requests * 1e6)
        t.cores_used.append(t.cpus[-1] * load.rps / 1e6)
        if t.upstream:
            t.upstream_cpus.append(
                (group_cpu_seconds(t.upstream.popen.pid) - up0) / load.requests * 1e6
            )
    single = run_wrk(t.url, t.script, 1, args.latency_duration, core=t.wrk_core)
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
    add(
        "--cores",
        default="1,0",
        metavar="TARGET,LOAD",
        help="the headline, per core: one nginx worker and one bus process, each alone on core "
        "TARGET in turn, wrk and the upstream on core LOAD (default 1,0); 'none': no pinning, "
        "only the --workers runs",
    )
    add("--json", type=Path, default=None, metavar="FILE", help="also write the results as JSON")
    add(
        "--strict",
        action="store_true",
        help="exit 1 when the bus (process durability) is below the floor or adds over 1 ms",
    )
    return p.parse_args(argv)


def _cores(text: str) -> tuple[int, int] | None | str:
    """``TARGET,LOAD`` as two distinct cores this process may use, ``None`` for 'none', or
    what is wrong with it."""
    if text.strip().lower() == "none":
        return None
    try:
        target, load = (int(c) for c in text.split(","))
    except ValueError:
        return f"--cores {text!r}: give two cores, TARGET,LOAD (for example 1,0), or none"
    allowed = os.sched_getaffinity(0)
    if target == load or not {target, load} <= allowed:
        return (
            f"--cores {text!r}: two distinct cores of {sorted(allowed)} are needed "
            "(or --cores none)"
        )
    if shutil.which("taskset") is None:
        return "--cores needs taskset (util-linux), or --cores none"
    return target, load


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
                    "core": t.core,
                    "cpu_us_per_request": t.cpus,
                    "cores_used": t.cores_used,
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
    cores = _cores(args.cores)
    if isinstance(cores, str):
        print(cores, file=sys.stderr)
        return 2
    # (durability, core) of each bus: per core, one process for each durability; then the
    # --workers processes, not pinned, for the first durability (a secondary line)
    runs: list[tuple[str, int | None]] = [(d, None) for d in durabilities]
    if cores is not None:
        runs = [(d, cores[0]) for d in durabilities]
        if args.workers > 1:
            runs.append((durabilities[0], None))
    proxies = sorted({c for _, c in runs}, key=lambda c: c is None)
    per_target = args.warmup + args.duration + args.latency_duration
    estimate = per_target * (1 + len(proxies) + len(runs)) * args.rounds + 10 + 5 * len(runs)
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
    if cores is not None:
        print(
            f"  per core    nginx proxy 1 worker and bus 1 process, each alone on core "
            f"{cores[0]}, measured in turn; wrk and the upstream (1 worker) on core {cores[1]}"
        )
    if None in proxies:
        print(
            f"  workers     upstream nginx {1 if cores else args.nginx_workers}, nginx proxy "
            f"{args.nginx_workers}, bus {args.workers}; not pinned; wrk 1 thread"
        )
    print(flush=True)

    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="dargah-bench-"))
    targets: list[Target] = []
    log_text: list[str] = []
    status = 0
    try:
        load_core = cores[1] if cores is not None else None
        up_port = free_port()
        up = start_nginx(
            procs,
            "upstream nginx",
            tmp / "upstream",
            1 if cores is not None else args.nginx_workers,
            UPSTREAM_SERVER.format(port=up_port, json=BODY),
            core=load_core,
        )
        wait_http(f"http://127.0.0.1:{up_port}{UPSTREAM_PATH}", up)

        print("Making a fresh bus instance per bus with the dargah CLI ...", flush=True)
        homes = [tmp / f"home-{d}-{'any' if c is None else c}" for d, c in runs]
        secrets_ = [make_instance(home, up_port) for home in homes]

        # nginx gets the same request headers as the bus (a dummy token of similar length)
        dummy = write_wrk_script(
            tmp / "headers-dummy.lua", "x" * 200, UPSTREAM_PATH.rsplit("/", 1)[0] + "/"
        )
        # with cores: wrk and the upstream share the load core, the ceiling of the runs per core
        targets.append(
            Target(
                "direct upstream",
                1 if cores is not None else args.nginx_workers,
                f"http://127.0.0.1:{up_port}{UPSTREAM_PATH}",
                dummy,
                up,
                wrk_core=load_core,
                core=load_core,
            )
        )
        nginxes: dict[int | None, Target] = {}
        for core in proxies:
            proxy_port = free_port()
            workers = 1 if core is not None else args.nginx_workers
            name = "nginx proxy" if core is None else f"nginx proxy (core {core})"
            px = start_nginx(
                procs,
                name,
                tmp / f"proxy-{'any' if core is None else core}",
                workers,
                PROXY_SERVER.format(port=proxy_port, upstream_port=up_port),
                core=core,
            )
            url = f"http://127.0.0.1:{proxy_port}{UPSTREAM_PATH}"
            wait_http(url, px)
            wrk_core = load_core if core is not None else None
            nginxes[core] = Target(name, workers, url, dummy, px, up, wrk_core=wrk_core, core=core)
        # each bus on an instance of its own: the processes of one instance share its
        # durability, and an idle bus would otherwise do its upkeep (seals, index batches,
        # checkpoints) on the log of the bus being measured
        buses = []
        for (d, core), home, secret in zip(runs, homes, secrets_, strict=True):
            one = 1 if core is not None else None
            bus = start_bus(procs, tmp, home, up, secret, d, args, core=core, workers=one)
            bus.wrk_core = load_core if core is not None else None
            buses.append(bus)
        # measured in turn: each nginx proxy, then the buses judged against it
        for core, nginx in nginxes.items():
            targets += [nginx, *(b for b in buses if b.core == core)]

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
        log_text = [
            line
            for home, bus in zip(homes, buses, strict=True)
            for line in check_log(home, [bus], f"message log {bus.name.removeprefix('bus ')}")
        ]
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
                "one connection; judged (--strict) on the default durability, process (a record "
                "survives a crash of the bus, kill -9 included); power adds an fsync per group "
                "commit (docs/performance.md)"
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
        print(profile_steps(args.profile))
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


if __name__ == "__main__":
    sys.exit(main())
