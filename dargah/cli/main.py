"""The ``dargah`` command: one module per verb group, each thin."""

from __future__ import annotations

import click

from dargah import __version__
from dargah.cli import catalogue, certs, console_users, events, log, manage, oversight, run


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dargah")
def main() -> None:
    """Dargah: the Government Service Bus and smart services portal."""


for group in (
    catalogue.commands,
    certs.commands,
    console_users.commands,
    events.commands,
    log.commands,
    manage.commands,
    oversight.commands,
    run.commands,
):
    for command in group:
        main.add_command(command)


if __name__ == "__main__":
    main()
