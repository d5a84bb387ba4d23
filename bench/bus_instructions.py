"""Instructions per bus call, counted by callgrind: a figure that other work on the machine
does not move.

One bus process (``--workers 1``, process durability) runs under ``valgrind
--tool=callgrind`` on a fresh instance made with the CLI, behind the benchmark's upstream
nginx; ``wrk`` warms it up, then callgrind's counters are zeroed, ``wrk`` loads it for
``--duration`` seconds (16 connections: under valgrind the bus answers about a hundred calls
a second) and the counters are dumped. It prints the user-space instructions per answered
call, by shared object (the interpreter, libsodium, SQLite, ...) and the top functions by own
count. The kernel is not counted (compare the bus's system time in ``/proc``).

Usage::

    .venv/bin/python bench/bus_instructions.py [--duration S] [--keep FILE]

Needs valgrind (``apt-get install -y valgrind``), nginx and wrk. About a minute and a half.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from _bus import bus_env, get_token, make_instance, preflight_bus, start_nginx
from _config import BODY, BUS_PATH, DARGAH, UPSTREAM_PATH, UPSTREAM_SERVER, VENV_BIN
from _procs import BenchError, Processes, free_port, wait_http
from _wrk import run_wrk, write_wrk_script


def self_counts(path: Path) -> tuple[Counter[str], Counter[tuple[str, str]]]:
    """Own instruction counts by object and by (function, object) of a callgrind output file
    (a cost line right after ``calls=`` is the inclusive cost of that call: not own)."""
    names: dict[str, dict[str, str]] = {"ob": {}, "fn": {}}

    def name(kind: str, rest: str) -> str:
        m = re.match(r"\((\d+)\)(?: (.*))?", rest)
        if m is None:
            return rest
        if m.group(2) is not None:
            names[kind][m.group(1)] = m.group(2)
        return names[kind].get(m.group(1), "?")

    by_object: Counter[str] = Counter()
    by_function: Counter[tuple[str, str]] = Counter()
    ob = fn = "?"
    after_call = False
    for line in path.read_text(errors="replace").splitlines():
        key, _, rest = line.partition("=")
        if key in ("ob", "fn", "cob", "cfn"):
            value = name(key.lstrip("c"), rest)
            if key == "ob":
                ob = value.rsplit("/", 1)[-1]
            elif key == "fn":
                fn = value
        elif key == "calls":
            after_call = True
        elif line[:1].isdigit() or line[:1] in ("+", "-", "*"):
            parts = line.split()
            if len(parts) < 2:
                continue
            if after_call:
                after_call = False
                continue
            by_object[ob] += int(parts[1])
            by_function[(fn, ob)] += int(parts[1])
    return by_object, by_function


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--duration", type=float, default=30, help="seconds counted (default 30)")
    p.add_argument("--keep", type=Path, default=None, help="keep callgrind's output as FILE")
    p.add_argument("--top", type=int, default=25, help="functions shown (default 25)")
    args = p.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed: apt-get install -y valgrind", file=sys.stderr)
        return 2
    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="dargah-callgrind-"))
    out = tmp / "callgrind.out"
    try:
        up_port = free_port()
        up = start_nginx(
            procs, "upstream", tmp / "up", 1, UPSTREAM_SERVER.format(port=up_port, json=BODY)
        )
        wait_http(f"http://127.0.0.1:{up_port}{UPSTREAM_PATH}", up)
        home = tmp / "home"
        secret = make_instance(home, up_port)
        port = free_port()
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        argv += [str(VENV_BIN / "python"), str(DARGAH), "serve", "bus", "--home", str(home)]
        argv += ["--port", str(port), "--workers", "1"]
        bus = procs.start("bus", argv, tmp / "bus.log", env=bus_env())
        base = f"http://127.0.0.1:{port}"
        print("starting the bus under callgrind (a minute or so) ...", flush=True)
        wait_http(f"{base}/readyz", bus, timeout=600)
        token = get_token(base, secret)
        preflight_bus(base, token)
        script = write_wrk_script(tmp / "bus.lua", token, BUS_PATH.rsplit("/", 1)[0] + "/")
        run_wrk(base + BUS_PATH, script, 16, 10, timeout_s=10)  # warm-up
        pid = str(bus.popen.pid)
        subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
        load = run_wrk(base + BUS_PATH, script, 16, args.duration, timeout_s=10)
        subprocess.run(["callgrind_control", "-d", "load", pid], check=True, capture_output=True)
        if not load.ok or not load.requests:
            raise BenchError(f"{load.non2xx} non-2xx answers, errors {load.socket_errors}")
        dumps = sorted(tmp.glob("callgrind.out.*"))
        if not dumps:
            raise BenchError("callgrind wrote no dump")
        by_object, by_function = self_counts(dumps[-1])
        if args.keep is not None:
            shutil.copy(dumps[-1], args.keep)
    except BenchError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    total = sum(by_object.values())
    n = load.requests
    print(f"{n} calls counted; {total / n:,.0f} user-space instructions per call, by object:")
    for obj, count in by_object.most_common(12):
        print(f"  {100 * count / total:5.1f}%  {count / n:9,.0f}  {obj}")
    print(f"top {args.top} functions by own count (per call):")
    for (fn, obj), count in by_function.most_common(args.top):
        print(f"  {100 * count / total:5.1f}%  {count / n:9,.0f}  {fn[:60]}  [{obj}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
