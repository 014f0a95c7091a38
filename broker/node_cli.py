"""``asci node certs``, ``asci node agent`` and the node operations ``update``, ``drain``, ``resume``, ``remove``."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import click

from asci.cli_context import AsciContext, pass_ctx
from asci.db import session_scope


@click.group("certs")
def certs_group() -> None:
    """The facility CA and the nodes' certificates (for their engines and agents)."""


def _print(issued) -> None:
    for item in issued:
        click.echo(f"{item.subject}: {', '.join(str(p) for p in item.files)} "
                   f"(expires {item.not_after:%Y-%m-%d %H:%M} UTC)")


@certs_group.command("init")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default="asci", show_default=True, help="the CA's name")
@click.option("--days", type=click.IntRange(1, 36500), default=3650, show_default=True, help="the CA's lifetime")
@click.option("--force", is_flag=True, help="replace an existing CA (every certificate it issued stops working)")
def certs_init(folder: Path, name: str, days: int, force: bool) -> None:
    """Write the facility CA (ca.pem, ca-key.pem) and the platform's client certificate (cert.pem, key.pem)."""
    from broker.certs import init

    _print(init(folder, name=name, days=days, force=force))


@certs_group.command("issue")
@click.argument("folder", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.argument("name")
@click.option("--host", "hosts", multiple=True, required=True, help="the node's IP address or DNS name (repeatable)")
@click.option("--days", type=click.IntRange(1, 3650), default=825, show_default=True)
def certs_issue(folder: Path, name: str, hosts: tuple[str, ...], days: int) -> None:
    """Write FOLDER/NAME/ca.pem, server-cert.pem and server-key.pem for node NAME (re-issuing rotates them)."""
    from broker.certs import issue

    _print([issue(folder, name, list(hosts), days=days)])


@click.command("agent")
@click.option("--listen", required=True, help="ADDRESS:PORT to listen on with TLS")
@click.option("--tls-dir", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="holds ca.pem, server-cert.pem, server-key.pem (asci node certs issue)")
@click.option("--docker", "docker_url", default="unix:///var/run/docker.sock", show_default=True,
              help="the node's own Docker engine")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("/run/asci-agent"),
              show_default=True, help="where the session folders live on this node")
def agent_command(listen: str, tls_dir: Path, docker_url: str, run_dir: Path) -> None:
    """Serve this node's session folders and VNC relays to the platform (no database, no settings)."""
    from broker.agent import make_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        server = make_server(listen, tls_dir, docker_url, run_dir.absolute())
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    stop = threading.Event()

    def ended(*_args) -> None:
        if not stop.is_set():
            stop.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, ended)
    signal.signal(signal.SIGINT, ended)
    host, port = server.server_address[:2]
    click.echo(f"agent of node {server.agent.name} listening on {host}:{port} (run folder {run_dir})", err=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


def _node_row(db, name: str):
    from sqlalchemy import select

    from broker.errors import NotFound
    from broker.models import Node

    row = db.scalar(select(Node).where(Node.name == name))
    if row is None:
        raise NotFound(f"no node {name!r}")
    return row


@click.command("update")
@click.argument("name")
@click.option("--tls-ca", default=None)
@click.option("--tls-cert", default=None)
@click.option("--tls-key", default=None)
@click.option("--agent", default=None, help="HOST:PORT of the node's agent ('' removes it)")
@pass_ctx
def node_update(ctx: AsciContext, name: str, tls_ca, tls_cert, tls_key, agent) -> None:
    """Change node NAME's certificates or agent (rotation: running desktops keep running)."""
    from broker.nodes import update_node

    with session_scope(ctx.settings) as db:
        row = update_node(ctx.settings, db, name, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key, agent=agent)
        click.echo(f"node {name}: {row.docker_url}, agent {row.agent or 'none'}, answers with the new files")


@click.command("drain")
@click.argument("name")
@pass_ctx
def node_drain(ctx: AsciContext, name: str) -> None:
    """No new sessions on node NAME; running ones stay."""
    with session_scope(ctx.settings) as db:
        _node_row(db, name).drained = True
    click.echo(f"node {name}: drained")


@click.command("resume")
@click.argument("name")
@pass_ctx
def node_resume(ctx: AsciContext, name: str) -> None:
    """Node NAME takes new sessions again."""
    with session_scope(ctx.settings) as db:
        _node_row(db, name).drained = False
    click.echo(f"node {name}: takes sessions")


@click.command("remove")
@click.argument("name")
@click.option("--force", is_flag=True, help="stop its sessions first")
@pass_ctx
def node_remove(ctx: AsciContext, name: str, force: bool) -> None:
    """Forget node NAME (refused while sessions run on it, unless --force stops them)."""
    from broker.handle import cli_broker
    from broker.nodes import remove_node

    with session_scope(ctx.settings) as db:
        stopped = remove_node(ctx.settings, db, name, force=force, broker=cli_broker(ctx.settings))
    click.echo(f"node {name}: removed" + (f" ({stopped} sessions stopped)" if stopped else ""))


COMMANDS = (certs_group, agent_command, node_update, node_drain, node_resume, node_remove)
