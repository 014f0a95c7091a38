"""Core sub-commands: ``asci db`` and ``asci user``."""

from __future__ import annotations

import click

from asci import accounts
from asci.db import current_revision, session_scope, upgrade
from asci.cli import AsciContext, pass_ctx


@click.group("db")
def db_group() -> None:
    """Create and migrate the database."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Alembic revision to migrate to.")
@pass_ctx
def db_upgrade(ctx: AsciContext, revision: str) -> None:
    """Migrate the configured database (ASCI_DATABASE_URL) to the newest schema."""
    new = upgrade(ctx.settings, revision)
    click.echo(f"database at revision {new}")


@db_group.command("current")
@pass_ctx
def db_current(ctx: AsciContext) -> None:
    """Print the schema revision of the configured database."""
    click.echo(current_revision(ctx.settings) or "empty (run: asci db upgrade)")


@click.group("user")
def user_group() -> None:
    """Manage local accounts and API tokens."""


@user_group.command("add")
@click.argument("username")
@click.option("--password", help="Password (prompted for when omitted).")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
@click.option("--uid", type=int, help="Unix uid the user's desktops run as.")
@click.option("--gid", type=int, help="Unix gid the user's desktops run as.")
@pass_ctx
def user_add(ctx: AsciContext, username: str, password: str | None, admin: bool, uid: int | None,
             gid: int | None) -> None:
    """Add a local user."""
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    with session_scope(ctx.settings) as db:
        accounts.create_user(db, username, password, is_admin=admin, uid=uid, gid=gid)
    click.echo(f"user {username} added{' (administrator)' if admin else ''}")


@user_group.command("token")
@click.argument("username")
@click.option("--name", default="cli", show_default=True, help="A label for the token.")
@pass_ctx
def user_token(ctx: AsciContext, username: str, name: str) -> None:
    """Issue an API token for USERNAME and print it (it is shown only once)."""
    with session_scope(ctx.settings) as db:
        token = accounts.issue_token(db, accounts.get_user(db, username), name)
    click.echo(token)
