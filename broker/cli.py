"""``asci experiment``, ``asci node`` and ``asci session``: the broker's administrator commands."""

from __future__ import annotations

import json
from pathlib import Path

import click
from sqlalchemy import select

from asci.cli import AsciContext, pass_ctx
from asci.db import session_scope


@click.group()
def experiment() -> None:
    """Experiments, their members and the environments they may use."""


@experiment.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_ctx
def experiment_import(ctx: AsciContext, file: Path) -> None:
    """Import experiments and memberships from a user office CSV or JSON FILE (all or nothing)."""
    from broker.experiments_import import import_file

    counts = import_file(ctx.settings, file)
    click.echo(", ".join(f"{key.replace('_', ' ')}: {value}" for key, value in counts.items()))


@experiment.command("allow")
@click.argument("code")
@click.argument("environment")
@pass_ctx
def experiment_allow(ctx: AsciContext, code: str, environment: str) -> None:
    """Let experiment CODE launch ENVIRONMENT."""
    from broker.experiments_import import import_rows

    with session_scope(ctx.settings) as db:
        from broker.models import Experiment

        found = db.scalar(select(Experiment).where(Experiment.code == code))
        if found is None:
            raise click.ClickException(f"no experiment {code!r}")
        import_rows(db, [{"code": code, "title": found.title, "data_path": found.data_path,
                          "start": found.starts_on and found.starts_on.isoformat(),
                          "end": found.ends_on and found.ends_on.isoformat(), "environments": [environment]}])
    click.echo(f"{code} may use {environment}")


@experiment.command("list")
@pass_ctx
def experiment_list(ctx: AsciContext) -> None:
    """Experiments with their members."""
    from broker.models import Experiment

    with session_scope(ctx.settings) as db:
        for row in db.scalars(select(Experiment).order_by(Experiment.code)):
            members = " ".join(sorted(m.user.username for m in row.members))
            click.echo(f"{row.code}\t{row.starts_on or ''}..{row.ends_on or ''}\t{row.data_path}\t{members}")


@click.group()
def node() -> None:
    """Docker hosts sessions run on."""


@node.command("add")
@click.argument("name")
@click.option("--url", "docker_url", required=True, help="unix:///var/run/docker.sock or tcp://host:2376")
@click.option("--cpus", type=float, default=8.0, show_default=True)
@click.option("--memory", default="16g", show_default=True, help="bytes or a size such as 64g")
@click.option("--max-sessions", type=int, default=20, show_default=True)
@click.option("--ports", default=None, help="VNC port range, e.g. 5901-5999 (default: session_ports setting)")
@click.option("--vnc-host", default="127.0.0.1", show_default=True, help="address websockify reaches VNC on")
@click.option("--tls-ca", default="")
@click.option("--tls-cert", default="")
@click.option("--tls-key", default="")
@click.option("--nvidia-smi", "nvidia_smi", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="recorded output of nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader")
@pass_ctx
def node_add(ctx: AsciContext, name, docker_url, cpus, memory, max_sessions, ports, vnc_host, tls_ca, tls_cert,
             tls_key, nvidia_smi) -> None:
    """Register (or update) node NAME."""
    from asci.config import _port_range
    from broker.gpus import parse_nvidia_smi
    from broker.models import Node
    from broker.service import parse_memory

    low, high = _port_range("--ports", ports) if ports else ctx.settings.session_ports
    gpus = parse_nvidia_smi(nvidia_smi.read_text()) if nvidia_smi else []
    with session_scope(ctx.settings) as db:
        row = db.scalar(select(Node).where(Node.name == name)) or Node(name=name)
        db.add(row)
        row.docker_url, row.cpus, row.memory_bytes, row.max_sessions = docker_url, cpus, parse_memory(memory), max_sessions
        row.port_min, row.port_max, row.vnc_host = low, high, vnc_host
        row.tls_ca, row.tls_cert, row.tls_key, row.state = tls_ca, tls_cert, tls_key, "up"
        if nvidia_smi:
            row.gpus = gpus
        row.gpus = row.gpus or []
    click.echo(f"node {name}: {docker_url}, {cpus:g} CPUs, {len(gpus)} GPUs, ports {low}-{high}")


@node.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def node_list(ctx: AsciContext, as_json: bool) -> None:
    """Nodes with their state and usage."""
    from broker.api import node_dict
    from broker.models import Node

    with session_scope(ctx.settings) as db:
        rows = [node_dict(db, row) for row in db.scalars(select(Node).order_by(Node.name))]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        used = row["used"]
        click.echo(f"{row['name']}\t{row['state']}\t{row['docker_url']}\tsessions {used['sessions']}/"
                   f"{row['max_sessions']}\tcpus {used['cpus']:g}/{row['cpus']:g}\tgpus {len(row['gpus'])}")


@node.command("prepull")
@pass_ctx
def node_prepull(ctx: AsciContext) -> None:
    """Pull the current version of every environment on every node that is up."""
    from broker.backends.base import NodeRef
    from broker.errors import BrokerError
    from broker.models import Node
    from broker.service import broker_for
    from builder.models import SUCCEEDED, Environment, EnvironmentVersion

    broker = broker_for(ctx.settings)
    with session_scope(ctx.settings) as db:
        images = [version.pull_reference for env in db.scalars(select(Environment))
                  for version in db.scalars(select(EnvironmentVersion).where(
                      EnvironmentVersion.environment_id == env.id, EnvironmentVersion.version == env.current_version,
                      EnvironmentVersion.status == SUCCEEDED))]
        nodes = [NodeRef.of(n) for n in db.scalars(select(Node).where(Node.state == "up"))]
    failures = 0
    for ref in nodes:
        for image in images:
            try:
                pulled = broker.backend.ensure_image(ref, image)
                click.echo(f"{ref.name}\t{image}\t{'pulled' if pulled else 'present'}")
            except BrokerError as exc:
                failures += 1
                click.echo(f"{ref.name}\t{image}\tFAILED: {exc}", err=True)
    if failures:
        raise click.ClickException(f"{failures} pulls failed")


@click.group()
def session() -> None:
    """Desktop sessions: list, stop, reconcile and cull."""


@session.command("list")
@click.option("--active", is_flag=True, help="only sessions that have not ended")
@pass_ctx
def session_list(ctx: AsciContext, active: bool) -> None:
    """Every user's sessions, newest first."""
    from asci.accounts import User
    from broker.service import list_sessions, session_dict

    with session_scope(ctx.settings) as db:
        admin = User(id=0, username="cli", is_admin=True)
        for row in list_sessions(db, admin, everyone=True, include_ended=not active):
            data = session_dict(row)
            click.echo(f"{data['id']}\t{data['state']}\t{data['user']}\t{data['experiment']}\t"
                       f"{data['environment']}:{data['version']}\t{data['node']}:{data['vnc_port']}\t{data['message']}")


@session.command("stop")
@click.argument("session_id", type=int)
@pass_ctx
def session_stop(ctx: AsciContext, session_id: int) -> None:
    """Stop session SESSION_ID (any user's)."""
    from broker.errors import NotFound
    from broker.models import DesktopSession
    from broker.service import broker_for

    with session_scope(ctx.settings) as db:
        row = db.get(DesktopSession, session_id)
        if row is None:
            raise NotFound(f"no session {session_id}")
        broker_for(ctx.settings).stop_session(db, row, "stopped by an administrator")
        click.echo(f"session {session_id}: {row.state}")


@session.command("reconcile")
@click.option("--loop", "run_loop", is_flag=True, help="keep reconciling (and culling) every --interval seconds")
@click.option("--interval", type=float, default=30.0, show_default=True)
@pass_ctx
def session_reconcile(ctx: AsciContext, run_loop: bool, interval: float) -> None:
    """Re-adopt running containers, mark vanished sessions lost, mark silent nodes down."""
    from broker.reconcile import loop, reconcile
    from broker.service import broker_for

    broker = broker_for(ctx.settings)
    if run_loop:
        loop(broker, interval)
        return
    with session_scope(ctx.settings) as db:
        click.echo(json.dumps(reconcile(broker, db)))


@session.command("cull")
@pass_ctx
def session_cull(ctx: AsciContext) -> None:
    """Warn idle sessions, stop those idle too long or past their maximum lifetime."""
    from broker.cull import cull
    from broker.service import broker_for

    with session_scope(ctx.settings) as db:
        click.echo(json.dumps(cull(broker_for(ctx.settings), db)))
