"""``dargah oversight``: measurements of smartness kept day by day (smartness.md)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from dargah.cli.context import home_option, load_instance, reports_errors
from dargah.core.clock import utc_now
from dargah.oversight.snapshots import take_snapshot


@click.group()
def oversight() -> None:
    """Oversight: smartness of public services measured from evidence."""


@oversight.command("snapshot")
@click.option(
    "--no-duplicates",
    is_flag=True,
    help="Skip counting candidate duplicate pairs (the slow part on a large catalogue).",
)
@home_option
@reports_errors
def snapshot(no_duplicates: bool, home: Path | None) -> None:
    """Store today's national and per-agency measurements (levels, counted services, KPIs,
    violations, duplicates); running it again the same day replaces that day's snapshot."""
    inst = load_instance(home)
    started = time.perf_counter()
    done = take_snapshot(inst.engine, utc_now(), duplicates=not no_duplicates)
    nation = done["nation"]
    levels = " ".join(f"{i}:{n}" for i, n in enumerate(nation["verified_levels"]))
    click.echo(
        f"snapshot {done['day']}: nation and {done['scopes'] - 1} agencies "
        f"({time.perf_counter() - started:.1f} s)"
    )
    progress = nation["progress"]
    click.echo(
        f"services {nation['n_services']}, smart {nation['smart']} "
        f"(expected {progress['expected']}, {progress['standing']}), verified levels {levels}"
    )
    v = nation["violations"]
    click.echo(
        f"violations: once-only {v['once-only']}, direct connection {v['direct-connection']}, "
        f"unasserted calls {v['unasserted-calls']}; duplicates: "
        f"{nation['duplicates']['confirmed']} confirmed, {nation['duplicates']['candidates']} candidates"
    )


commands: list[click.Command] = [oversight]
