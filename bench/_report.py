"""Results: the table, the verdicts and the facts of the machine."""

from __future__ import annotations

import contextlib
import os
import platform
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from _config import (
    DARGAH,
    FLOOR_RATIO,
    GOAL_ADDED_P50_MS,
    GOAL_RATIO,
    NGINX,
    VENV_BIN,
    WRK,
)
from _wrk import Target


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
    """Each bus run against the nginx proxy run alike: pinned to one core against pinned to one
    core (the headline, first), several workers against nginx unpinned (a secondary line).
    ``False`` when the headline bus with the default durability (process) misses the floor."""
    lines: list[str] = []
    passed = True
    buses = [t for t in targets if t.name.startswith("bus") and t.load and t.single]
    for t in sorted(buses, key=lambda t: t.core is None):  # pinned ones first
        nginx = next(
            (n for n in targets if n.name.startswith("nginx proxy") and n.core == t.core), None
        )
        if nginx is None or nginx.load is None or nginx.single is None:
            continue
        assert t.load is not None and t.single is not None
        ratio = t.load.rps / nginx.load.rps
        times = t.cpu_us / nginx.cpu_us if nginx.cpu_us else 0.0
        added = t.single.p50_ms - nginx.single.p50_ms
        if ratio >= GOAL_RATIO:
            tp = "meets the goal (>= 1/3)"
        elif ratio >= FLOOR_RATIO:
            tp = "below the goal of 1/3, above the floor of 1/5"
        else:
            tp = "BELOW THE FLOOR of 1/5"
        if times and times <= 1 / GOAL_RATIO:
            cpu = "meets the goal (<= 3x)"
        elif times and times <= 1 / FLOOR_RATIO:
            cpu = "below the goal of 3x, within the floor of 5x"
        else:
            cpu = "OVER THE FLOOR of 5x"
        lat = "meets the goal (<= 1 ms)" if added <= GOAL_ADDED_P50_MS else "OVER the goal of 1 ms"
        pinned = any(b.core is not None for b in buses)
        if t.core is not None:
            what = f"per core (bus 1 process, nginx 1 worker, each alone on core {t.core})"
        else:
            what = (
                f"{'secondary: ' if pinned else ''}bus {t.workers} processes against nginx "
                f"{nginx.workers} worker(s), not pinned"
            )
        why = (
            " (below 1: the core was shared with other work, or the load side was the limit)"
            if t.core is not None
            else ""
        )
        lines += [
            "",
            f"{t.name}: {what}",
            f"{t.name}: calls/s bus/nginx = {t.load.rps:,.0f}/{nginx.load.rps:,.0f} = "
            f"{ratio:.3f} at {connections} connections: {tp}",
            f"{t.name}: CPU per call {t.cpu_us:.0f} us in the bus's processes, "
            f"{nginx.cpu_us:.0f} us in nginx's ({times:.1f}x, nginx/bus = "
            f"{1 / times if times else 0:.3f}): {cpu}",
            f"{t.name}: CPU used under load (calls/s x CPU per call, median round): bus "
            f"{t.core_use:.2f} core(s), nginx {nginx.core_use:.2f}{why}",
            f"{t.name}: added p50 at 1 connection = {added:+.3f} ms "
            f"({t.single.p50_ms:.3f} - {nginx.single.p50_ms:.3f}): {lat}",
            *(f"{t.name}: {note}" for note in t.notes),
        ]
        headline = t.core is not None or not pinned
        if headline and t.name.startswith("bus (process"):
            if ratio < FLOOR_RATIO or added > GOAL_ADDED_P50_MS:
                passed = False
    return lines, passed
