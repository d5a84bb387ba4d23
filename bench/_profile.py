"""Profiling a bus worker with py-spy during the load."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from _config import VENV_BIN
from _procs import Proc, children, cmdline

PROFILE_RATE = 200  # samples per second


def start_profile(bus: Proc, out: Path, seconds: float) -> subprocess.Popen[bytes] | None:
    """py-spy on one bus worker while the throughput load runs: collapsed stacks, per thread,
    aggregated by function, busy samples only (a thread waiting in epoll, on a lock or on the
    GIL is idle). ``--nonblocking`` so that sampling does not slow the worker down."""
    pyspy = shutil.which("py-spy", path=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
    if pyspy is None:
        print("  (py-spy is not installed: .venv/bin/pip install py-spy; no profile)")
        return None
    # `dargah serve --workers W` runs each worker as `python -m dargah.cli.main ... --reuse-port`
    kids = [p for p in children(bus.popen.pid) if "--reuse-port" in cmdline(p)]
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


# The steps of a bus call, and the frames that belong to each: a sample goes to the step of the
# innermost frame (nearest the leaf) that matches one, so a signature made inside the proxy is
# the signature's, a log commit awaited by the proxy is the log's.
STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("assertion signing (Ed25519)", ("EdDSASigner.", "_b64url_bytes (dargah/core/keys.py)")),
    ("token verify", ("(dargah/bus/tokens.py)", "HS256.")),
    ("message log append/commit", ("(dargah/bus/log/",)),
    ("metrics", ("(dargah/bus/metrics.py)",)),
    ("upstream forward", ("(dargah/bus/upstream.py)",)),
    ("bus request parse (headers, path)", ("(dargah/bus/request.py)",)),
    ("monitor, SLO roll-up (background)", ("(dargah/bus/monitor.py)", "(dargah/bus/slo.py)")),
    ("HTTP response (cycle)", ("(dargah/http/cycle.py)",)),
    (
        "policy: grant/purpose/subject, proxy",
        ("(dargah/bus/proxy.py)", "(dargah/bus/calls.py)", "(dargah/bus/app.py)"),
    ),
    ("HTTP parse (protocol)", ("(dargah/http/protocol.py)",)),
    ("event loop, sockets, httptools (C)", ("Runner.run (",)),
)


def profile_steps(raw: Path) -> str:
    """Busy samples per step of a call (``STEPS``), all threads, from py-spy's collapsed
    stacks; what matches no step is 'other'."""
    counts: dict[str, int] = {}
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        step = "other"
        for frame in reversed(stack.split(";")):
            frame = re.sub(r":\d+\)$", ")", frame)
            step = next((s for s, pats in STEPS if any(p in frame for p in pats)), "")
            if step:
                break
        step = step or "other"
        counts[step] = counts.get(step, 0) + int(count)
        total += int(count)
    if not total:
        return "  (no samples)"
    lines = ["  busy samples by step of a call (innermost matching frame, all threads):"]
    lines += [
        f"  {100 * c / total:5.1f}%  {step}"
        for step, c in sorted(counts.items(), key=lambda kv: -kv[1])
    ]
    return "\n".join(lines)
