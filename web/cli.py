"""``asci serve``, ``asci demo`` and ``asci part``: run the platform (registered as entry points)."""

from __future__ import annotations

import secrets
import signal
import threading

import click

from asci.cli import AsciContext, pass_ctx
from asci.db import upgrade


def _parts(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def _supervise(settings, only: tuple[str, ...] = (), without: tuple[str, ...] = ()) -> None:
    from web.platform import Supervisor, chosen_parts

    parts = chosen_parts(settings, only, without)
    if "web" in parts:
        click.echo(f"  ASCI is served on {settings.public_url} (parts: {', '.join(parts)}; Ctrl-C stops)")
    Supervisor(settings, parts, echo=click.echo).run()


@click.command("serve")
@click.option("--only", help="Run only these parts (comma-separated: web, websockify, worker, reconcile, cull).")
@click.option("--without", help="Run every part but these.")
@pass_ctx
def serve(ctx: AsciContext, only: str | None, without: str | None) -> None:
    """Run the platform: web app, websockify, ci worker, reconcile and cull loops, supervised."""
    _supervise(ctx.settings, _parts(only), _parts(without))


@click.command("demo")
@click.option("--username", default="demo", show_default=True)
@pass_ctx
def demo(ctx: AsciContext, username: str) -> None:
    """Bring up the platform on its embedded defaults with a demo login, then serve it."""
    from web.demo import demo_recipes, prepare_demo, uses_demo_recipes

    settings = ctx.settings
    upgrade(settings)
    if uses_demo_recipes(settings):
        settings = demo_recipes(settings)
    password = secrets.token_urlsafe(9)
    for line in prepare_demo(settings, username, password):
        click.echo(line)
    click.echo("")
    click.echo(f"  demo login: {username} / {password}")
    _supervise(settings)


@click.command("part", hidden=True)
@click.argument("name", type=click.Choice(["web", "worker", "reconcile", "cull"]))
@pass_ctx
def part(ctx: AsciContext, name: str) -> None:
    """Run one part of the platform in the foreground (what asci serve starts for each part)."""
    settings = ctx.settings
    if name == "web":
        from web.server import serve_web

        serve_web(settings)
        return
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if name == "worker":
        import ci

        ci.Worker(settings).run_forever(stop)
    else:
        import broker

        loop = broker.reconcile_loop if name == "reconcile" else broker.cull_loop
        interval = settings.reconcile_interval_s if name == "reconcile" else settings.cull_interval_s
        loop(broker.broker_for(settings), interval, stop)
