"""The CLI reference in docs/cli.md is the commands' own help, and is current."""

from __future__ import annotations

from pathlib import Path

from dargah.cli.reference import render

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def test_the_cli_reference_matches_the_commands_help() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), "run `make docs` to regenerate docs/cli.md"


def test_the_platform_verbs_exist() -> None:
    text = render()
    for verb in (
        "dargah demo",
        "dargah serve",
        "dargah log verify",
        "dargah member add",
        "dargah subsystem add",
        "dargah service add",
        "dargah grant add",
        "dargah grant revoke",
        "dargah quota set",
    ):
        assert f"## `{verb}`" in text, verb
