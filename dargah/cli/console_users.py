"""``dargah console-user``: the accounts that sign in to the web console."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from dargah.cli.context import home_option, load_instance, reports_errors
from dargah.console.web.accounts import ROLES, add_user, list_users, set_active
from dargah.console.web.guard import SESSION_TTL
from dargah.web.sessions import SessionStore


@click.group("console-user")
def console_user() -> None:
    """Console accounts: operators, agency administrators and auditors."""


@console_user.command("add")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(ROLES), help="What the account may do.")
@click.option("--member", default=None, help="The member an agency-admin acts for (its id).")
@click.option("--name", "display_name", default=None, help="The name shown in the console.")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
@home_option
@reports_errors
def add(
    username: str,
    role: str,
    member: str | None,
    display_name: str | None,
    password_stdin: bool,
    home: Path | None,
) -> None:
    """Create an account; the password is asked for (or read with --password-stdin)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    inst = load_instance(home)
    with inst.engine.begin() as conn:
        add_user(
            conn,
            username,
            password,
            role,
            inst.actor,
            member_id=member,
            display_name=display_name,
        )
    click.echo(f"console user {username} ({role}) created")


@console_user.command("list")
@home_option
@reports_errors
def list_(home: Path | None) -> None:
    """List the accounts (never their passwords)."""
    inst = load_instance(home)
    with inst.engine.connect() as conn:
        click.echo(json.dumps(list_users(conn), ensure_ascii=False, indent=2))


@console_user.command("deactivate")
@click.argument("username")
@home_option
@reports_errors
def deactivate(username: str, home: Path | None) -> None:
    """Stop an account from signing in and end its open sessions."""
    inst = load_instance(home)
    with inst.engine.begin() as conn:
        set_active(conn, username, False, inst.actor)
    SessionStore(inst.engine, "console", ttl=SESSION_TTL).end_all(username)
    click.echo(f"console user {username} deactivated")


commands: list[click.Command] = [console_user]
