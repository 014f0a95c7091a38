"""``asci registry ...``: the registry's set-up (proxy, credentials) and its garbage collection.

gc lives here, not in builder: the builder knows which versions were ever current and deletes
manifests (``builder.registry_gc``), but which versions are still referenced is known above it, by
the broker (sessions) and by ci (a running job's version, which the smoke gate is launching): this
command asks both and hands the builder the protected ``(environment, version)`` pairs.
"""

from __future__ import annotations

import os

import click
from sqlalchemy import select

import broker
import builder
from asci.cli_context import AsciContext, pass_ctx
from asci.db import session_scope
from ci.models import BuildJob, JobState


def protected_versions(settings) -> set[tuple[str, str]]:
    """``(environment, version)`` that sessions on record or unfinished build jobs reference."""
    with session_scope(settings) as db:
        protected = broker.versions_in_use(db)
        jobs = db.execute(select(BuildJob.environment, BuildJob.version).where(
            BuildJob.state.in_((JobState.QUEUED, JobState.RUNNING)), BuildJob.version.is_not(None))).all()
        return protected | {(env, version) for env, version in jobs}


@click.group("registry")
def registry() -> None:
    """The container registry: set-up of its authenticating proxy, garbage collection."""


@registry.command("gc")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted and reclaimed; change nothing.")
@click.option("--keep-days", type=int, help="Override ASCI_REGISTRY_GC_KEEP_DAYS for this run.")
@pass_ctx
def gc(ctx: AsciContext, dry_run: bool, keep_days: int | None) -> None:
    """Delete the manifests of failed and never-promoted versions older than the retention setting
    (never one that was ever current, nor one a session or a running build references), then reclaim
    blobs with the registry's garbage collector while writes are paused."""
    settings = ctx.settings if keep_days is None else ctx.settings.replace(registry_gc_keep_days=keep_days)
    report = builder.registry_gc(settings, protected_versions(settings), dry_run=dry_run,
                                 log=lambda line: click.echo(line, err=True))
    click.echo("\n".join(report.lines()))


@registry.command("setup")
@click.option("--listen", default=None, help="host:port of the proxy (default: ASCI_REGISTRY).")
@click.option("--push-listen", default=None, help="host:port of the push endpoint (default: ASCI_REGISTRY_PUSH).")
@click.option("--nginx-user", default="www-data", show_default=True,
              help="The proxy's worker user (it reads the htpasswd and reaches the registry's socket); '' for none.")
@click.option("--front-dir", default=None, type=click.Path(file_okay=False),
              help="A folder the proxy's workers can reach, for the htpasswd, the registry's socket and the "
              "writes-paused flag, when the data directory is not theirs to traverse (saved for this data "
              "directory; default: ASCI_REGISTRY_FRONT_DIR, else registry-auth/).")
@click.option("--backend", default="", help="Where the registry listens (default: a Unix socket under the data "
              "directory; a compose stack: 0.0.0.0:5000, reached by the proxy as registry:5000).")
@pass_ctx
def setup(ctx: AsciContext, listen: str | None, push_listen: str | None, nginx_user: str, front_dir: str | None,
          backend: str) -> None:
    """Write the registry's config, the proxy's config and the builder's credentials (generated once)
    under the data directory; prints the files to start the two servers with."""
    from asci.config import save_local_settings

    chosen = {}
    if push_listen:
        chosen["registry_push"] = push_listen
    if front_dir:
        chosen["registry_front_dir"] = os.path.abspath(front_dir)
    settings = ctx.settings.replace(**chosen) if chosen else ctx.settings
    files = builder.setup_registry(settings, listen or "", push_listen or "", user=nginx_user or None,
                                   backend=backend)
    if chosen:  # for every asci command of this data directory (garbage collection pauses writes there)
        save_local_settings(ctx.settings, **chosen)
    click.echo(f"registry config {files.registry_config}\nnginx config {files.nginx_config}\n"
               f"password {files.password_file}\nsocket {files.socket}")
