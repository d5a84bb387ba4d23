"""The CLI reference (docs/cli.md), generated from the commands' own help."""

from __future__ import annotations

import click

from dargah.cli.main import main


def _walk(cmd: click.Command, path: list[str]) -> list[tuple[list[str], click.Command]]:
    out = [(path, cmd)]
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            out += _walk(cmd.commands[name], [*path, name])
    return out


def render() -> str:
    lines = [
        "# `dargah` command reference",
        "",
        "Generated from the commands' `--help` by `make docs`; a test checks it is current.",
        "",
    ]
    for path, cmd in _walk(main, ["dargah"]):
        ctx = click.Context(
            cmd, info_name=" ".join(path), terminal_width=100, max_content_width=100
        )
        lines += [f"## `{' '.join(path)}`", "", "```", cmd.get_help(ctx).rstrip(), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
