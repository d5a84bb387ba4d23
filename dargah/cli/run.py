"""``dargah serve`` and ``dargah demo``: running the parts."""

from __future__ import annotations

from pathlib import Path

import click

from dargah.cli.context import home_option, reports_errors
from dargah.core.settings import settings_from_env
from dargah.server import PARTS, build_app, configure_logging, site_for


@click.command()
@click.argument("parts", nargs=-1, type=click.Choice(PARTS))
@home_option
@click.option(
    "--host", default=None, help="Address to listen on (default $DARGAH_HOST or 127.0.0.1)."
)
@click.option("--port", type=int, default=None, help="Port (default $DARGAH_PORT or 8000).")
@click.option("--workers", type=int, default=None, help="Processes sharing the port.")
@click.option("--reuse-port", is_flag=True, hidden=True, help="Share the port (set for workers).")
@reports_errors
def serve(
    parts: tuple[str, ...],
    home: Path | None,
    host: str | None,
    port: int | None,
    workers: int | None,
    reuse_port: bool,
) -> None:
    """Run the chosen PARTS (default: bus registry) with configuration from DARGAH_* variables."""
    from dargah.http.server import run_workers
    from dargah.http.server import serve as serve_sites

    chosen = parts or ("bus", "registry")
    settings = settings_from_env(home=home, host=host, port=port, workers=workers)
    configure_logging(settings.log_level)
    if settings.workers > 1 and not reuse_port:
        from dargah.registry.instance import open_instance

        open_instance(settings)[0].dispose()  # create and migrate once, before the workers start
        argv = [
            "serve",
            *chosen,
            "--home",
            str(settings.home),
            "--host",
            settings.host,
            "--port",
            str(settings.port),
            "--workers",
            "1",
        ]
        run_workers(argv, settings.workers, settings.host, settings.port)
        return
    app = build_app(settings, chosen)
    site = site_for(settings, app, reuse_port=reuse_port)
    site.on_drain = getattr(app, "drain", None)
    serve_sites([site], drain=settings.drain_seconds)


@click.command()
@home_option
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option(
    "--port", type=int, default=None, help="Port of the bus and web pages (default 8000)."
)
@reports_errors
def demo(home: Path | None, host: str | None, port: int | None) -> None:
    """Start every part with sandbox agencies and data; write HOME/demo.json."""
    from dargah.demo.run import run_demo

    run_demo(settings_from_env(home=home, host=host, port=port))


commands: list[click.Command] = [serve, demo]
