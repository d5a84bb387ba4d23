"""``dargah log``: verify and archive the message log."""

from __future__ import annotations

import click

commands: list[click.Command] = []
