"""``dargah serve`` and ``dargah demo``: running the parts."""

from __future__ import annotations

import os
from pathlib import Path

import click

from dargah.cli.context import home_option, reports_errors
from dargah.core.settings import settings_from_env
from dargah.server import PARTS, build_app, configure_logging, uvicorn_config


@click.command()
@click.argument("parts", nargs=-1, type=click.Choice(PARTS))
@home_option
@click.option("--host", default=None, help="Address to listen on (default $DARGAH_HOST or 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default $DARGAH_PORT or 8000).")
@click.option("--workers", type=int, default=None, help="Processes sharing the port.")
@reports_errors
def serve(parts: tuple[str, ...], home: Path | None, host: str | None, port: int | None,
          workers: int | None) -> None:
    """Run the chosen PARTS (default: bus registry) with configuration from DARGAH_* variables."""
    import uvicorn

    chosen = parts or ("bus", "registry")
    settings = settings_from_env(home=home, host=host, port=port, workers=workers)
    configure_logging(settings.log_level)
    if settings.workers > 1:
        # Worker processes rebuild the app from the environment.
        os.environ.update({
            "DARGAH_HOME": str(settings.home), "DARGAH_HOST": settings.host,
            "DARGAH_PORT": str(settings.port), "DARGAH_PARTS": ",".join(chosen),
        })
        from dargah.registry.instance import open_instance

        open_instance(settings)  # create and migrate once, before the workers start
        uvicorn.run("dargah.server:app_factory", factory=True, host=settings.host, port=settings.port,
                    workers=settings.workers, loop="uvloop", http="httptools", access_log=False,
                    log_level=settings.log_level, server_header=False, proxy_headers=False)
        return
    app = build_app(settings, chosen)
    uvicorn.Server(uvicorn_config(app, settings)).run()


@click.command()
@home_option
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port of the bus and web pages (default 8000).")
@reports_errors
def demo(home: Path | None, host: str | None, port: int | None) -> None:
    """Start every part with sandbox agencies and data; write HOME/demo.json."""
    from dargah.demo.run import run_demo

    run_demo(settings_from_env(home=home, host=host, port=port))


commands: list[click.Command] = [serve, demo]
