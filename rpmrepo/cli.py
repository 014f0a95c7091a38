"""``asci rpm``: publish, list, retract and re-index the beamline repositories;
``asci repo``: create repositories and grant the right to publish into them.

The command line acts as the machine's administrator (whoever can read its settings and
database is one): ``asci rpm publish`` needs no grant.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from asci.cli_context import AsciContext, pass_ctx
from asci.db import session_scope
from rpmrepo.errors import NotFound
from rpmrepo.grants import create_repo, grant, list_grants, revoke
from rpmrepo.index import list_packages
from rpmrepo.publish import publish, reindex, retract
from rpmrepo.store import RepoLayout, list_repos

_repo_option = click.option("--repo", "repo", default=None, metavar="NAME",
                            help="Repository name (default: the default_repo setting).")


@click.group("rpm")
def rpm() -> None:
    """Publish beamline RPMs and manage the YUM repositories."""


@rpm.command("publish")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@_repo_option
@click.option("--user", "username", default=None, help="Record this user as the publisher.")
@click.option("--create", is_flag=True, help="Create the repository when it does not exist (the default "
              "repository is created on first use anyway).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_ctx
def publish_cmd(ctx: AsciContext, files: tuple[Path, ...], repo: str | None, username: str | None, create: bool,
                as_json: bool) -> None:
    """Validate FILE... and publish them (all or nothing; metadata regenerated once)."""
    layout = RepoLayout.of(ctx.settings, repo)
    if not layout.exists() and not create and layout.name != ctx.settings.default_repo:
        raise NotFound(f"no repository {layout.name!r} (asci repo create {layout.name}, or --create)")
    user_id = None
    if username:
        from asci.accounts import get_user

        with session_scope(ctx.settings) as db:
            user_id = get_user(db, username).id
    result = publish(ctx.settings, files, repo=repo, user=user_id)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    for package in result.packages:
        click.echo(f"{package.status}: {package.nevra} ({package.filename}, sha256 {package.sha256[:16]})")
    if result.revision:
        click.echo(f"repository {result.repo!r}: metadata revision {result.revision}")


@rpm.command("list")
@_repo_option
@click.option("--all", "include_retracted", is_flag=True, help="Include retracted packages.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def list_cmd(ctx: AsciContext, repo: str | None, include_retracted: bool, as_json: bool) -> None:
    """List the packages of a repository."""
    layout = RepoLayout.of(ctx.settings, repo)
    with session_scope(ctx.settings) as db:
        rows = list_packages(db, layout.name, include_retracted=include_retracted)
        if as_json:
            click.echo(json.dumps([row.as_dict() for row in rows], indent=2))
            return
        for row in rows:
            flag = "  (retracted)" if row.retracted else ""
            click.echo(f"{row.nevra}\t{row.sha256[:16]}\t{row.summary}{flag}")


@rpm.command("retract")
@click.argument("nevra")
@_repo_option
@pass_ctx
def retract_cmd(ctx: AsciContext, nevra: str, repo: str | None) -> None:
    """Hide NEVRA from new builds (it stays installable from the 'all' view)."""
    result = retract(ctx.settings, nevra, repo=repo)
    if result.event_id is None:
        click.echo(f"already retracted: {result.nevra}")
    else:
        click.echo(f"retracted: {result.nevra} (metadata revision {result.revision})")


@rpm.command("reindex")
@_repo_option
@click.option("--metadata", "regenerate_metadata", is_flag=True, help="Also rebuild the metadata in full.")
@pass_ctx
def reindex_cmd(ctx: AsciContext, repo: str | None, regenerate_metadata: bool) -> None:
    """Rebuild the database index of a repository from its folder."""
    result = reindex(ctx.settings, repo=repo, regenerate_metadata=regenerate_metadata)
    click.echo(f"repository {result.repo!r}: {len(result.added)} added, {len(result.updated)} updated, "
               f"{len(result.removed)} removed")
    for line in result.skipped:
        click.echo(f"skipped: {line}", err=True)
    if result.revision:
        click.echo(f"metadata revision {result.revision}")


@rpm.command("repos")
@pass_ctx
def repos_cmd(ctx: AsciContext) -> None:
    """List the repositories with their package counts."""
    from rpmrepo import repo_url

    with session_scope(ctx.settings) as db:
        for name in list_repos(ctx.settings):
            count = len(list_packages(db, name))
            click.echo(f"{name}\t{count} packages\t{repo_url(ctx.settings, name, 'current')}")


@click.group("repo")
def repo_group() -> None:
    """Create repositories and grant users the right to publish into them."""


@repo_group.command("create")
@click.argument("name")
@pass_ctx
def repo_create(ctx: AsciContext, name: str) -> None:
    """Create the empty repository NAME (served at once; uploads need a grant)."""
    layout = create_repo(ctx.settings, name)
    click.echo(f"repository {layout.name!r} created")


@repo_group.command("list")
@pass_ctx
def repo_list(ctx: AsciContext) -> None:
    """The repositories with their package counts and publishers."""
    from rpmrepo import repo_url

    with session_scope(ctx.settings) as db:
        for name in list_repos(ctx.settings):
            publishers = " ".join(g.username for g in list_grants(db, name)) or "-"
            click.echo(f"{name}\t{len(list_packages(db, name))} packages\tpublishers: {publishers}\t"
                       f"{repo_url(ctx.settings, name, 'current')}")


def _existing(ctx: AsciContext, name: str) -> RepoLayout:
    return RepoLayout.of(ctx.settings, name).require()


@repo_group.command("grant")
@click.argument("name")
@click.argument("username")
@click.option("--by", "granted_by", default=None, help="The administrator granting it (recorded).")
@pass_ctx
def repo_grant(ctx: AsciContext, name: str, username: str, granted_by: str | None) -> None:
    """Let USERNAME publish into repository NAME (their token needs the publish:NAME scope too)."""
    from asci.accounts import get_user

    layout = _existing(ctx, name)
    with session_scope(ctx.settings) as db:
        by = get_user(db, granted_by) if granted_by else None
        added = grant(db, layout.name, get_user(db, username), by)
    click.echo(f"{username} may publish into {layout.name}" + ("" if added else " (already granted)"))


@repo_group.command("revoke")
@click.argument("name")
@click.argument("username")
@pass_ctx
def repo_revoke(ctx: AsciContext, name: str, username: str) -> None:
    """Take the right to publish into repository NAME away from USERNAME."""
    from asci.accounts import get_user

    layout = RepoLayout.of(ctx.settings, name)
    with session_scope(ctx.settings) as db:
        removed = revoke(db, layout.name, get_user(db, username))
    click.echo(f"{username} may no longer publish into {layout.name}" if removed
               else f"{username} held no grant for {layout.name}")


@repo_group.command("grants")
@click.argument("name", required=False)
@pass_ctx
def repo_grants(ctx: AsciContext, name: str | None) -> None:
    """Who may publish where (of repository NAME, or of every repository)."""
    with session_scope(ctx.settings) as db:
        rows = list_grants(db, RepoLayout.of(ctx.settings, name).name if name else None)
    for row in rows:
        click.echo(f"{row.repo}\t{row.username}\t{row.granted_at}\t{row.granted_by or '-'}")
