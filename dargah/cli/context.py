"""What every verb shares: the instance it works on, and how it reports errors."""

from __future__ import annotations

import functools
import getpass
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy import Engine

from dargah.core.errors import DargahError
from dargah.core.settings import Settings, settings_from_env
from dargah.registry.instance import InstanceInfo, open_instance

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Instance:
    settings: Settings
    engine: Engine
    info: InstanceInfo
    new_admin_token: str | None

    @property
    def actor(self) -> str:
        try:
            return f"cli:{getpass.getuser()}"
        except Exception:
            return "cli"


def home_option(f: F) -> F:
    return click.option(
        "--home",
        type=click.Path(path_type=Path),
        default=None,
        help="Instance directory (default $DARGAH_HOME, then ./.dargah).",
    )(f)


def load_instance(home: Path | None, **overrides: Any) -> Instance:
    settings = settings_from_env(home=home, **overrides)
    engine, info, token = open_instance(settings)
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(engine.dispose)
    return Instance(settings, engine, info, token)


def reports_errors(f: F) -> F:
    """Turn Dargah errors into a one-line message and exit status 1 instead of a traceback."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except DargahError as exc:
            click.echo(f"error ({exc.code}): {exc.detail}", err=True)
            sys.exit(1)
        except ValueError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]
