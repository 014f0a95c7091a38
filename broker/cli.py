"""``asci experiment``, ``asci node`` and ``asci session``: the broker's administrator commands."""

from __future__ import annotations

import json
from pathlib import Path

import click
from sqlalchemy import select

from asci.cli_context import AsciContext, pass_ctx
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

    from broker.models import Experiment

    with session_scope(ctx.settings) as db:
        found = db.scalar(select(Experiment).where(Experiment.code == code))
        if found is None:
            raise click.ClickException(f"no experiment {code!r}")
        import_rows(ctx.settings, db, [{"code": code, "title": found.title, "data_path": found.data_path,
                          "start": found.starts_on and found.starts_on.isoformat(),
                          "end": found.ends_on and found.ends_on.isoformat(), "environments": [environment]}])
    click.echo(f"{code} may use {environment}")


@experiment.command("list")
@pass_ctx
def experiment_list(ctx: AsciContext) -> None:
    """Experiments with their members."""
    from broker.views import all_experiments

    with session_scope(ctx.settings) as db:
        for row in all_experiments(db):
            click.echo(f"{row.code}\t{row.starts_on or ''}..{row.ends_on or ''}\t{row.data_path}\t"
                       f"{' '.join(row.members)}")


@click.group()
def node() -> None:
    """Docker hosts sessions run on."""


@node.command("add")
@click.argument("name")
@click.option("--url", "docker_url", required=True, help="unix:///var/run/docker.sock or tcp://host:2376")
@click.option("--cpus", type=float, default=None, help="CPUs (default: read from the engine and kept current)")
@click.option("--memory", default=None, help="bytes or a size such as 64g (default: read from the engine)")
@click.option("--reserve-cpus", type=float, default=None, help="CPUs left to the system (default: node_reserve_cpus)")
@click.option("--reserve-memory", default=None, help="memory left to the system (default: node_reserve_memory_mb)")
@click.option("--cpu-overcommit", type=float, default=None, help="default: node_cpu_overcommit")
@click.option("--memory-overcommit", type=float, default=None, help="default: node_memory_overcommit")
@click.option("--max-sessions", type=int, default=None, help="default: node_max_sessions")
@click.option("--tls-ca", default="")
@click.option("--tls-cert", default="")
@click.option("--tls-key", default="")
@click.option("--nvidia-smi", "nvidia_smi", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="recorded output of nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader")
@pass_ctx
def node_add(ctx: AsciContext, name, docker_url, cpus, memory, reserve_cpus, reserve_memory, cpu_overcommit,
             memory_overcommit, max_sessions, tls_ca, tls_cert, tls_key, nvidia_smi) -> None:
    """Register (or update) node NAME; its CPUs and memory are read from its engine unless given.

    Its engine must share this machine's filesystem (the sessions' VNC sockets; see the README)."""
    from broker.gpus import parse_nvidia_smi
    from broker.nodes import register_node
    from broker.placement import schedulable
    from broker.resources import parse_memory

    gpus = parse_nvidia_smi(nvidia_smi.read_text()) if nvidia_smi else []
    with session_scope(ctx.settings) as db:
        row = register_node(
            ctx.settings, db, name, docker_url, cpus=cpus, memory_bytes=parse_memory(memory) if memory else None,
            max_sessions=max_sessions, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key,
            gpus=gpus if nvidia_smi else None, reserve_cpus=reserve_cpus,
            reserve_memory_bytes=parse_memory(reserve_memory) if reserve_memory else None,
            cpu_overcommit=cpu_overcommit, memory_overcommit=memory_overcommit)
        cpus_free, memory_free = schedulable(row)
        click.echo(f"node {name}: {docker_url}, {row.cpus:g} CPUs and {row.memory_bytes / 2**30:.1f} GiB "
                   f"({row.capacity_source}), schedulable {cpus_free:g} CPUs and {memory_free / 2**30:.1f} GiB, "
                   f"{len(row.gpus)} GPUs, at most {row.max_sessions} sessions")


@node.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def node_list(ctx: AsciContext, as_json: bool) -> None:
    """Nodes with their state and usage."""
    from broker.views import node_views

    with session_scope(ctx.settings) as db:
        rows = node_views(db)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        used = row["used"]
        click.echo(f"{row['name']}\t{row['state']}\t{row['docker_url']}\tsessions {used['sessions']}/"
                   f"{row['max_sessions']}\tcpus {used['cpus']:g}/{row['schedulable']['cpus']:g}\t"
                   f"memory {used['memory_bytes'] / 2**30:.1f}/{row['schedulable']['memory_bytes'] / 2**30:.1f} GiB"
                   f"\tgpus {len(row['gpus'])}")


@node.command("prepull")
@pass_ctx
def node_prepull(ctx: AsciContext) -> None:
    """Pull the current version of every environment on every node that is up."""
    import builder
    from broker.backends.base import NodeRef
    from broker.errors import BrokerError
    from broker.nodes import up_nodes
    from broker.service import broker_for

    broker = broker_for(ctx.settings)
    with session_scope(ctx.settings) as db:
        images = builder.current_images(db)
        nodes = [NodeRef.of(node) for node in up_nodes(db)]
    failures = 0
    for ref in nodes:
        for image in images:
            try:
                pulled = broker.backend.ensure_image(ref, image, click.echo)
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
    from broker.views import list_sessions, session_dict

    with session_scope(ctx.settings) as db:
        admin = User(id=0, username="cli", is_admin=True)
        for row in list_sessions(db, admin, everyone=True, include_ended=not active):
            data = session_dict(row)
            click.echo(f"{data['id']}\t{data['state']}\t{data['user']}\t{data['experiment']}\t"
                       f"{data['environment']}:{data['version']}\t{data['node']}\t{data['message']}")


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
@click.option("--loop", "run_loop", is_flag=True, help="keep reconciling every --interval seconds (as asci serve does)")
@click.option("--interval", type=float, help="seconds between passes (default: setting reconcile_interval_s)")
@pass_ctx
def session_reconcile(ctx: AsciContext, run_loop: bool, interval: float | None) -> None:
    """Re-adopt running containers, mark vanished sessions lost, mark silent nodes down."""
    from broker.loops import reconcile_loop
    from broker.reconcile import reconcile
    from broker.service import broker_for

    broker = broker_for(ctx.settings)
    if run_loop:
        reconcile_loop(broker, interval or ctx.settings.reconcile_interval_s)
        return
    with session_scope(ctx.settings) as db:
        click.echo(json.dumps(reconcile(broker, db)))


@session.command("cull")
@click.option("--loop", "run_loop", is_flag=True, help="keep culling every --interval seconds (as asci serve does)")
@click.option("--interval", type=float, help="seconds between passes (default: setting cull_interval_s)")
@pass_ctx
def session_cull(ctx: AsciContext, run_loop: bool, interval: float | None) -> None:
    """Warn idle sessions, stop those idle too long or past their maximum lifetime."""
    from broker.cull import cull
    from broker.loops import cull_loop
    from broker.service import broker_for

    broker = broker_for(ctx.settings)
    if run_loop:
        cull_loop(broker, interval or ctx.settings.cull_interval_s)
        return
    with session_scope(ctx.settings) as db:
        click.echo(json.dumps(cull(broker, db)))
