"""``asci serve``, ``asci demo`` and ``asci part``: run the platform (registered as entry points)."""

from __future__ import annotations

import secrets
import signal
import threading
from pathlib import Path

import click

from asci.cli_context import AsciContext, pass_ctx
from asci.db import upgrade


def _parts(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def _supervise(settings, only: tuple[str, ...] = (), without: tuple[str, ...] = ()) -> None:
    from web.platform import Supervisor, chosen_parts

    from asci import logs

    parts = chosen_parts(settings, only, without)
    if "web" in parts:
        click.echo(f"  ASCI is served on {settings.public_url} (parts: {', '.join(parts)}; Ctrl-C stops)")
    logs.configure(settings.log_format, part="serve")
    Supervisor(settings, parts, echo=lambda line: logs.event("serve.part", message=line)).run()


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
    for line in prepare_demo(settings, username, password, progress=click.echo):
        click.echo(line)
    click.echo("")
    click.echo(f"  demo login: {username} / {password}")
    _supervise(settings)


@click.command("part", hidden=True)
@click.argument("name", type=click.Choice(["web", "websockify", "worker", "reconcile", "cull"]))
@click.option("--port", type=click.IntRange(1, 65535), help="websockify: the port (default: websockify_port).")
@pass_ctx
def part(ctx: AsciContext, name: str, port: int | None) -> None:
    """Run one part of the platform in the foreground (what asci serve starts for each part)."""
    from asci import logs

    settings = ctx.settings
    logs.configure(settings.log_format, part=name)
    if name == "web":
        from web.server import serve_web

        serve_web(settings)
        return
    if name == "websockify":
        from web.viewer_proxy import run

        run(settings, port=port)
        return
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if name == "worker":
        import ci

        # its lines are log events, a job's with its build id
        ci.Worker(settings, echo=lambda line: logs.event("worker.message", message=line), structured=True) \
            .run_forever(stop)
    else:
        import broker

        loop = broker.reconcile_loop if name == "reconcile" else broker.cull_loop
        interval = settings.reconcile_interval_s if name == "reconcile" else settings.cull_interval_s
        loop(broker.cli_broker(settings), interval, stop)


@click.group("deploy")
def deploy() -> None:
    """The facility deployment: the platform image and the compose stack's first start (deploy/)."""


@deploy.command("image")
@pass_ctx
def deploy_image(ctx: AsciContext) -> None:
    """Build the platform image from the offline base (no registry pulls); prints its tag last."""
    import time

    import builder

    began = time.monotonic()

    def stage(line: str) -> None:
        elapsed = int(time.monotonic() - began)
        click.echo(f"  [{elapsed // 60}:{elapsed % 60:02d}] {line}", err=True)

    client = builder.client_for(ctx.settings.docker_hosts[0])
    click.echo(builder.build_platform_image(client, log=lambda line: None, stage=stage))


@deploy.command("init")
@click.option("--admin", default="admin", show_default=True, envvar="ASCI_ADMIN_USER",
              help="The administrator's user name (ASCI_ADMIN_USER).")
@click.option("--admin-password", envvar="ASCI_ADMIN_PASSWORD", required=True,
              help="Its password when it is created (ASCI_ADMIN_PASSWORD).")
@click.option("--wait", "wait_s", default=120, show_default=True, help="Seconds to wait for the database.")
@click.option("--metrics-token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where Prometheus reads its token: written (mode 0600) with a new metrics token of the robot "
                   "user 'prometheus' unless the file exists.")
@pass_ctx
def deploy_init(ctx: AsciContext, admin: str, admin_password: str, wait_s: int,
                metrics_token_file: Path | None) -> None:
    """Migrate the database (waiting until it answers), create the administrator and the default repository
    (the administrator may publish into it), register the local node, and give Prometheus a token."""
    import time

    import rpmrepo
    from asci import accounts
    from asci.db import session_scope
    from asci.errors import DatabaseError
    from web.demo import register_local_node

    settings = ctx.settings
    deadline = time.monotonic() + wait_s
    while True:
        try:
            click.echo(f"database at revision {upgrade(settings)}")
            break
        except DatabaseError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    rpmrepo.create_repo(settings, settings.default_repo, exist_ok=True)
    with session_scope(settings) as db:
        user = db.query(accounts.User).filter_by(username=admin).first()
        if user is None:
            user = accounts.create_user(db, admin, admin_password, is_admin=True)
            click.echo(f"created administrator {admin}")
        rpmrepo.grant_publisher(db, settings.default_repo, user)
    click.echo(f"repository {settings.default_repo}: {admin} may publish into it")
    click.echo(register_local_node(settings))
    if metrics_token_file is not None:
        from web.prometheus_token import write_metrics_token

        click.echo(write_metrics_token(settings, metrics_token_file))

