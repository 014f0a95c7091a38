"""``asci serve`` and ``asci demo``: run the platform's web side (registered as entry points)."""

from __future__ import annotations

import secrets

import click

from asci.cli import AsciContext, pass_ctx
from asci.config import PROJECT_ROOT
from asci.db import upgrade


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
    upgrade(settings)
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
