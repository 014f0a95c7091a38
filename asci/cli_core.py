"""Core sub-commands: ``asci db``, ``asci user``, ``asci serve`` and ``asci demo``."""

from __future__ import annotations

import secrets

import click

from asci import accounts, db
from asci.cli import AsciContext, pass_ctx
from asci.config import PROJECT_ROOT


@click.group("db")
def db_group() -> None:
    """Create and migrate the database."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Alembic revision to migrate to.")
@pass_ctx
def db_upgrade(ctx: AsciContext, revision: str) -> None:
    """Migrate the configured database (ASCI_DATABASE_URL) to the newest schema."""
    new = db.upgrade(ctx.settings, revision)
    click.echo(f"database at revision {new}")


@db_group.command("current")
@pass_ctx
def db_current(ctx: AsciContext) -> None:
    """Print the schema revision of the configured database."""
    click.echo(db.current_revision(ctx.settings) or "empty (run: asci db upgrade)")


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
    with db.session_scope(ctx.settings) as session:
        accounts.create_user(session, username, password, is_admin=admin, uid=uid, gid=gid)
    click.echo(f"user {username} added{' (administrator)' if admin else ''}")


@user_group.command("token")
@click.argument("username")
@click.option("--name", default="cli", show_default=True, help="A label for the token.")
@pass_ctx
def user_token(ctx: AsciContext, username: str, name: str) -> None:
    """Issue an API token for USERNAME and print it (it is shown only once)."""
    with db.session_scope(ctx.settings) as session:
        token = accounts.issue_token(session, accounts.get_user(session, username), name)
    click.echo(token)


@click.command("serve")
@click.option("--host", help="Address to bind (default: settings web_host, 127.0.0.1).")
@click.option("--port", type=int, help="Port to bind (default: settings web_port, 8080).")
@pass_ctx
def serve(ctx: AsciContext, host: str | None, port: int | None) -> None:
    """Serve the web UI and API with waitress."""
    from web.server import run_server

    run_server(ctx.settings, host=host, port=port)


@click.command("demo")
@click.option("--username", default="demo", show_default=True)
@pass_ctx
def demo(ctx: AsciContext, username: str) -> None:
    """Bring up the platform on its embedded defaults with a demo login, then serve."""
    from web.demo import demo_recipes, prepare_demo
    from web.server import run_server

    settings = ctx.settings
    db.upgrade(settings)
    if settings.recipes_dir.resolve() == (PROJECT_ROOT / "recipes").resolve():
        settings = demo_recipes(settings)
    password = secrets.token_urlsafe(9)
    for line in prepare_demo(settings, username, password):
        click.echo(line)
    click.echo("")
    click.echo(f"  ASCI is up on {settings.public_url}")
    click.echo(f"  demo login: {username} / {password}")
    click.echo("")
    run_server(settings)

