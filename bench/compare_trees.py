"""Two or more versions of the bus under the same load, in alternating turns.

On a shared or noisy machine one run of ``bus_throughput.py`` moves by 10-20 %,
more than most single changes. This script starts one upstream nginx and one bus
per version side by side (each on a fresh instance of its own, made with that
version's CLI), then loads them in turn, round after round, so that each turn of
one version has a turn of the others beside it on the same machine state:

    .venv/bin/python bench/compare_trees.py HEAD~1 HEAD --rounds 5
    .venv/bin/python bench/compare_trees.py main . --rounds 4 --duration 6

A version is a git revision (its ``dargah`` package is exported with ``git
archive``) or ``.`` for the working tree. Each turn is a 1 s warm-up, then
``wrk -t1 -c64`` for ``--duration`` seconds; it prints calls/s and the CPU per
call of the bus's processes, and at the end the medians. Run it twice with the
versions in the other order to see whether position in the round matters. Every
turn must answer 2xx only. 127.0.0.1 only, bounded in time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _bus import make_instance, start_bus, start_nginx
from _config import BODY, NGINX, UPSTREAM_PATH, UPSTREAM_SERVER, WRK
from _procs import BenchError, Processes, free_port, group_cpu_seconds, wait_http
from _wrk import Target, run_wrk

ROOT = Path(__file__).resolve().parent.parent


def export(rev: str, into: Path) -> Path:
    """A directory whose ``dargah`` package is ``rev``'s (``.``: the working tree)."""
    if rev == ".":
        return ROOT
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "dargah"], capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise BenchError(f"git archive {rev} failed: {archive.stderr.decode(errors='replace')}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("versions", nargs="+", help="git revisions, or . for the working tree")
    p.add_argument("--rounds", type=int, default=4, help="turns per version (default 4)")
    p.add_argument("--duration", type=float, default=6, help="seconds per turn (default 6)")
    p.add_argument("--workers", type=int, default=2, help="bus worker processes (default 2)")
    p.add_argument(
        "--cores",
        default=None,
        metavar="TARGET,LOAD",
        help="per core: each bus one process on core TARGET, wrk and the upstream on core LOAD "
        "(for example 1,0; default: not pinned, --workers processes)",
    )
    args = p.parse_args()
    core: int | None = None
    load_core: int | None = None
    if args.cores:
        core, load_core = (int(c) for c in args.cores.split(","))
        args.workers = 1
    missing = [t for t in (NGINX, WRK) if not (Path(t).is_file() and os.access(t, os.X_OK))]
    if missing:
        print(f"not installed: {', '.join(missing)} (apt-get install -y nginx-light wrk)")
        return 2

    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="dargah-compare-"))
    # Out of the checkout: a worker started with ``python -m`` (as older versions start
    # them) puts its working directory first on sys.path, and would import the working
    # tree's ``dargah`` whatever PYTHONPATH says.
    os.chdir(tmp)
    try:
        up_port = free_port()
        up = start_nginx(
            procs,
            "upstream nginx",
            tmp / "upstream",
            1,
            UPSTREAM_SERVER.format(port=up_port, json=BODY),
            core=load_core,
        )
        wait_http(f"http://127.0.0.1:{up_port}{UPSTREAM_PATH}", up)
        buses: list[tuple[str, Target]] = []
        for i, rev in enumerate(args.versions):
            tree = export(rev, tmp / f"tree{i}")
            os.environ["PYTHONPATH"] = str(tree)  # the bus and its CLI import this version
            check = subprocess.run(
                [sys.executable, "-c", "import dargah; print(dargah.__file__)"],
                capture_output=True,
                text=True,
                check=True,
            )
            if not check.stdout.startswith(str(tree)):
                raise BenchError(f"{rev}: dargah imports from {check.stdout.strip()}, not {tree}")
            try:
                secret = make_instance(tmp / f"home{i}", up_port)
                bus = start_bus(
                    procs, tmp, tmp / f"home{i}", up, secret, "process", args, core=core
                )
            finally:
                os.environ.pop("PYTHONPATH", None)
            own = tmp / f"bus-{i}.lua"  # start_bus names the script by durability and port
            bus.script.rename(own)
            bus.script = own
            buses.append((rev, bus))
            print(f"{rev}: bus {i + 1} of {len(args.versions)} ready", flush=True)

        results: dict[str, list[tuple[float, float]]] = {rev: [] for rev, _ in buses}
        for rnd in range(1, args.rounds + 1):
            for rev, bus in buses:
                run_wrk(bus.url, bus.script, 64, 1, core=load_core)
                cpu0 = group_cpu_seconds(bus.proc.popen.pid)
                load = run_wrk(bus.url, bus.script, 64, args.duration, core=load_core)
                if not load.ok:
                    raise BenchError(f"{rev}: {load.non2xx} non-2xx answers\n{load.raw}")
                cpu = (group_cpu_seconds(bus.proc.popen.pid) - cpu0) / load.requests * 1e6
                results[rev].append((load.rps, cpu))
                print(
                    f"round {rnd}  {rev:<20} {load.rps:8,.0f} calls/s  {cpu:5.0f} µs/call"
                    f"  p50 {load.p50_ms:6.2f} ms",
                    flush=True,
                )
        print("\nmedians:")
        for rev, runs in results.items():
            rps = statistics.median(r for r, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            print(f"  {rev:<20} {rps:8,.0f} calls/s  {cpu:5.0f} µs/call")
    except BenchError as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
