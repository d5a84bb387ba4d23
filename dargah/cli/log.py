"""``dargah log``: verify, archive and show the message log."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import click
from sqlalchemy import select, text

from dargah.bus.log.archive import archive_log, check_archive_file, log_chains
from dargah.bus.log.archive_file import chain_archives, verify_archive_file
from dargah.bus.log.chain import FIELDS
from dargah.bus.log.lookup import newest_for_request
from dargah.bus.log.search import MAX_LIMIT
from dargah.bus.log.verify import VerifyReport, read_snapshot, verify_log
from dargah.cli.context import Instance, home_option, load_instance, reports_errors
from dargah.core.settings import settings_from_env
from dargah.store.tables import message_log

_COLS = ", ".join(f'"{f}"' for f in FIELDS)


@contextlib.contextmanager
def _existing_instance(home: Path | None) -> Iterator[Instance]:
    """The instance, refusing to create a new one where an operator expected a log."""
    settings = settings_from_env(home=home)
    if settings.is_sqlite and not (settings.home / "dargah.db").exists():
        raise click.ClickException(f"there is no Dargah instance in {settings.home.resolve()}")
    inst = load_instance(home)
    try:
        yield inst
    finally:
        inst.engine.dispose()


class _Progress:
    """A progress bar on stderr when it is a terminal; nothing otherwise."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None
        self.shown = 0

    def __call__(self, done: int, total: int) -> None:
        if not sys.stderr.isatty():
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.shown)
        self.shown = done

    def __enter__(self) -> _Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.bar is not None:
            self.bar.__exit__(kind, exc, tb)


def _report(title: str, report: VerifyReport) -> None:
    click.echo(f"{title}: {report.summary()}")
    if report.kids:
        click.echo(f"  seals signed by: {', '.join(report.kids)}")
    if len(report.chains) > 1:
        for chain, rep in report.chains.items():
            state = "intact" if rep.ok else rep.failure_line()
            named = "" if chain else "chain (unnamed): "  # a named chain's summary names it
            click.echo(f"  {named}{rep.summary()}: {state}")
    for warning in report.warnings:
        click.echo(f"  warning: {warning}")
    click.echo(f"  {'intact' if report.ok else report.failure_line()}")


@click.group()
def log() -> None:
    """The message log: verify it, archive old records, show records."""


@log.command("verify")
@home_option
@click.option(
    "--archive",
    "archives",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Verify this archive file (repeatable). Alone it is checked on its own; "
    "with --home also against the instance's keys and records, and the live log too.",
)
@reports_errors
def verify(home: Path | None, archives: tuple[Path, ...]) -> None:
    """Recompute every hash chain, check every seal and instance checkpoint; exit 1 when a
    record, seal or checkpoint is bad (each chain's first bad seq is named)."""
    results: list[tuple[Path, VerifyReport]] = []
    live: VerifyReport | None = None
    if archives and home is None:
        for path in archives:
            with _Progress(path.name) as bar:
                results.append((path, verify_archive_file(path, progress=bar)))
    else:
        with _existing_instance(home) as inst, read_snapshot(inst.engine) as conn:
            for path in archives:
                with _Progress(path.name) as bar:
                    results.append((path, check_archive_file(conn, path, progress=bar)))
            with _Progress("message log") as bar:
                live = verify_log(conn, progress=bar)
    for path, report in results:
        _report(f"archive {path}", report)
    gaps = chain_archives(results)
    for gap in gaps:
        click.echo(f"FAILED: {gap}")
    if live is not None:
        _report("message log", live)
    if gaps or not all(r.ok for _p, r in results) or (live is not None and not live.ok):
        sys.exit(1)


@log.command("archive")
@home_option
@click.option(
    "--before-seq",
    type=click.IntRange(min=2),
    default=None,
    help="Archive only records with a lower seq.",
)
@click.option(
    "--older-than",
    "older_than_days",
    type=click.FloatRange(min=0),
    default=None,
    help="Archive only records older than this many days.",
)
@reports_errors
def archive(home: Path | None, before_seq: int | None, older_than_days: float | None) -> None:
    """Move old sealed records (all of them by default) into files under {home}/archive/.

    Each chain is archived into files of its own. Prints one JSON line per file made (at most
    100,000 records each).
    """
    older = None if older_than_days is None else timedelta(days=older_than_days)
    made = 0
    with _existing_instance(home) as inst:
        for chain in log_chains(inst.engine):
            while (
                done := archive_log(
                    inst.engine,
                    inst.settings,
                    before_seq=before_seq,
                    older_than=older,
                    chain=chain,
                )
            ) is not None:
                click.echo(json.dumps({**done.__dict__, "path": str(done.path)}))
                made += 1
    if not made:
        click.echo("nothing to archive: no sealed records within the limits", err=True)


@log.command("show")
@home_option
@click.option("--request-id", default=None, help="The records of this request id.")
@click.option(
    "--last", type=click.IntRange(min=1), default=None, help="The newest N records (default 20)."
)
@reports_errors
def show(home: Path | None, request_id: str | None, last: int | None) -> None:
    """Print live records as JSON lines, oldest first (by seq, then chain)."""
    if request_id is not None and last is not None:
        raise click.UsageError("give --request-id or --last, not both")
    with _existing_instance(home) as inst, inst.engine.connect() as conn:
        if request_id is not None:
            found = newest_for_request(conn, select(message_log), request_id, MAX_LIMIT)
            records = [{f: r[f] for f in FIELDS} for r in found[::-1]]
        else:
            rows = conn.execute(
                text(f"SELECT {_COLS} FROM message_log ORDER BY seq DESC, chain DESC LIMIT :n"),
                {"n": last or 20},
            ).all()[::-1]
            records = [dict(zip(FIELDS, row, strict=True)) for row in rows]
    for record in records:
        click.echo(json.dumps(record, ensure_ascii=False))


commands: list[click.Command] = [log]
