"""``dargah catalogue``: import and export the catalogue of public services (catalogue.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from dargah.cli.context import home_option, load_instance, reports_errors
from dargah.core.clock import utc_now
from dargah.oversight import assess
from dargah.registry.catalogue import ImportReport, duplicates, export_catalogue, import_catalogue


class _Progress:
    """One click progress bar per stage (reading, validating, writing), on a terminal only."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.bar: Any = None
        self.stage = ""
        self.done = 0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        if stage != self.stage:
            self.close()
            self.stage, self.done = stage, 0
            self.bar = click.progressbar(length=total, label=f"{stage:<10}", file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _summary(report: ImportReport) -> None:
    for f in report.files:
        what = f"{f.kind or '?'}, {f.format}, {f.encoding or '?'}, {f.rows} row(s)"
        click.echo(f"read {f.file} ({what})")
    click.echo(
        f"agencies: {report.agencies_created} created, {report.agencies_updated} updated, "
        f"{report.agencies_unchanged} unchanged, {report.agencies_refused} refused"
    )
    click.echo(
        f"services: {report.services_created} created, {report.services_updated} updated, "
        f"{report.services_unchanged} unchanged, {report.services_refused} refused"
    )
    click.echo(f"warnings: {len(report.warnings)}, errors: {len(report.errors)}")
    if report.dry_run:
        click.echo("dry run: nothing written (the counts are what an import would do)")
    elif report.written:
        click.echo(f"written in one transaction ({report.seconds:.1f} s)")
    else:
        click.echo(
            "refused: nothing written; fix the errors above, or import the good rows "
            "with --skip-invalid"
        )


@click.group()
def catalogue() -> None:
    """The catalogue of public services: service cards, their import and export."""


@catalogue.command("import")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--map",
    "mapping",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A mapping file (TOML): the files' own columns to card fields.",
)
@click.option("--dry-run", is_flag=True, help="Validate only; write nothing.")
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Write the good rows and report the bad ones (default: write nothing "
    "when any row is bad).",
)
@home_option
@reports_errors
def import_(
    files: tuple[Path, ...],
    mapping: Path | None,
    dry_run: bool,
    skip_invalid: bool,
    home: Path | None,
) -> None:
    """Import service cards and agencies from JSON or CSV FILES (one transaction).

    Every problem is printed as FILE:LINE (or FILE:JSON-PATH) SERVICE_ID FIELD: REASON. The
    exit status is 1 when rows were refused and nothing was written.
    """
    inst = load_instance(home)
    progress = _Progress()
    try:
        report = import_catalogue(
            inst.engine,
            list(files),
            mapping=mapping,
            dry_run=dry_run,
            skip_invalid=skip_invalid,
            actor=inst.actor,
            instance=inst.info.code,
            progress=progress,
        )
    finally:
        progress.close()
    for problem in report.problems:
        prefix = "warning: " if problem.severity == "warning" else ""
        click.echo(f"{prefix}{problem}", err=True)
    _summary(report)
    if report.errors and not report.written:
        sys.exit(1)


@catalogue.command("export")
@click.option(
    "--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write here instead of standard output.",
)
@click.option(
    "--agencies-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="CSV only: also write the agencies to this file.",
)
@home_option
@reports_errors
def export(fmt: str, out: Path | None, agencies_out: Path | None, home: Path | None) -> None:
    """Export every card as stored, with its computed levels (definition_level, verified_level,
    counted, reasons)."""
    inst = load_instance(home)
    now = utc_now()
    counts = export_catalogue(
        inst.engine,
        fmt,
        out or sys.stdout,
        agencies_out=agencies_out,
        verdicts=lambda conn: assess(conn, now),
    )
    if out is not None:
        click.echo(
            f"exported {counts['services']} service(s) and {counts['agencies']} agencies to {out}",
            err=True,
        )


@catalogue.command("duplicates")
@click.option(
    "--min-score",
    type=click.FloatRange(0.0, 1.0),
    default=0.5,
    show_default=True,
    help="List candidate pairs scoring at least this (decided pairs are always listed).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["json", "table"]), default="json", show_default=True
)
@home_option
@reports_errors
def duplicates_(min_score: float, fmt: str, home: Path | None) -> None:
    """Every candidate pair of active services that may be the same service, best first.

    JSON: a list of {"a", "b", "score", "status", "object_differs", "same_agency"}; status is
    candidate, confirmed or dismissed, and only an operator's decision (dargah catalogue
    decide) makes a pair confirmed or dismissed.
    """
    inst = load_instance(home)
    found = duplicates.duplicates(inst.engine, min_score=min_score)
    if fmt == "json":
        click.echo(json.dumps(found, ensure_ascii=False, indent=2))
        return
    click.echo(f"{'a':<12} {'b':<12} {'score':>6}  {'status':<10} flags")
    for d in found:
        flags = ",".join(name for name in ("object_differs", "same_agency") if d[name])
        click.echo(f"{d['a']:<12} {d['b']:<12} {d['score']:>6.3f}  {d['status']:<10} {flags}")
    click.echo(f"{len(found)} pair(s)", err=True)


@catalogue.command("decide")
@click.argument("a")
@click.argument("b")
@click.option("--confirm", "status", flag_value="confirmed", help="The two are one service.")
@click.option("--dismiss", "status", flag_value="dismissed", help="The two are different.")
@click.option("--reason", default=None, help="Why (kept with the decision and in the audit).")
@home_option
@reports_errors
def decide(a: str, b: str, status: str | None, reason: str | None, home: Path | None) -> None:
    """Record an operator's decision on the pair of services A and B: --confirm or --dismiss.

    A later decision on the same pair replaces the earlier one; every decision is audited.
    """
    if status is None:
        raise click.UsageError("give --confirm or --dismiss")
    inst = load_instance(home)
    with inst.engine.connect() as conn, conn.begin():
        duplicates.decide(conn, a, b, status, inst.actor, reason)
    click.echo(f"{min(a, b)} {max(a, b)}: {status}")


commands: list[click.Command] = [catalogue]
