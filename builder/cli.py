"""``asci base ...`` (base desktop images) and ``asci env ...`` (environments and their versions)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from asci.cli_context import AsciContext, pass_ctx
from builder import base_images, docker_engine


@click.group("base")
def base() -> None:
    """Base desktop images defined under recipes/base."""


@base.command("list")
@pass_ctx
def base_list(ctx: AsciContext) -> None:
    """List base image definitions with their tags and whether they build here."""
    for definition in base_images.list_definitions(ctx.settings.recipes_dir):
        where = "buildable here" if definition.buildable else "render only"
        click.echo(f"{definition.name:32} {definition.image_tag:48} {where}")


@base.command("render")
@click.argument("name")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A parameter the definition declares in base.yaml (mirror URLs, base image).")
@pass_ctx
def base_render(ctx: AsciContext, name: str, params: tuple[str, ...]) -> None:
    """Print the rendered Dockerfile of base image NAME."""
    definition = base_images.load_definition(ctx.settings.recipes_dir, name)
    values = base_images.parse_params(definition, params)
    if definition.buildable:
        values.setdefault("rootfs_image", "<debootstrap root file system>")
        values.setdefault("apt_mirror", base_images.apt_mirror())
    click.echo(base_images.render_dockerfile(definition, **values), nl=False)


@base.command("build")
@click.argument("name")
@click.option("--force", is_flag=True, help="Build even when an image with the definition's hash exists.")
@pass_ctx
def base_build(ctx: AsciContext, name: str, force: bool) -> None:
    """Build base image NAME (skipped when its tag exists): each stage with its elapsed time on
    standard output, every line of the build on standard error; prints the tag last."""
    import time

    definition = base_images.load_definition(ctx.settings.recipes_dir, name)
    client = docker_engine.client_for(ctx.settings.docker_hosts[0])
    began = time.monotonic()

    def stage(line: str) -> None:
        elapsed = int(time.monotonic() - began)
        click.echo(f"  [{elapsed // 60}:{elapsed % 60:02d}] {line}")

    tag = base_images.build_base_image(definition, client, log=lambda line: click.echo(line, err=True),
                                       force=force, stage=stage)
    click.echo(tag)


# ------------------------------------------------------------------ asci env


def _log(line: str) -> None:
    click.echo(line, err=True)


@contextlib.contextmanager
def _db(settings):
    """A database session; an unreachable or unmigrated database is a one-line error."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from asci.db import session_scope
    from asci.errors import DatabaseError

    try:
        with session_scope(settings) as db:
            yield db
    except (OperationalError, ProgrammingError) as exc:
        raise DatabaseError(f"database not ready ({exc.orig}); run 'asci db upgrade'") from None


@click.group("env")
def env() -> None:
    """Environments: recipes → locked, version-tagged images in the registry."""


@env.command("list")
@pass_ctx
def env_list(ctx: AsciContext) -> None:
    """List environment recipes with their current version."""
    from sqlalchemy import select

    from builder.models import Environment
    from builder.recipes import list_recipes

    with _db(ctx.settings) as db:
        current = {e.name: e.current_version for e in db.scalars(select(Environment))}
    for recipe in list_recipes(ctx.settings.recipes_dir):
        click.echo(f"{recipe.name:28} {recipe.beamline:10} {recipe.base:20} "
                   f"current={current.get(recipe.name) or '-'}  {recipe.description}")


@env.command("validate")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@pass_ctx
def env_validate(ctx: AsciContext, files: tuple[Path, ...]) -> None:
    """Validate recipe FILES (default: every recipe); errors name file, line and field."""
    from builder.recipes import load_file, recipe_files

    for path in files or recipe_files(ctx.settings.recipes_dir):
        load_file(path, ctx.settings.recipes_dir)
        click.echo(f"ok {path}")


@env.command("lock")
@click.argument("name")
@pass_ctx
def env_lock(ctx: AsciContext, name: str) -> None:
    """Resolve environment NAME against the repository and print its lock (JSON)."""
    import json

    from builder.build import prepare

    prepared = prepare(ctx.settings, name, log=_log)
    click.echo(json.dumps(prepared.lock, indent=2, sort_keys=True))
    _log(f"lock digest sha256:{prepared.digest}")


@env.command("render")
@click.argument("name")
@click.option("--version", "version", default="unreleased", show_default=True, help="Version label to render.")
@pass_ctx
def env_render(ctx: AsciContext, name: str, version: str) -> None:
    """Lock environment NAME and print the Dockerfile a build would use."""
    from asci.db import utcnow
    from builder.build import prepare, render_version

    prepared = prepare(ctx.settings, name, log=_log)
    context = render_version(ctx.settings, prepared.recipe, prepared.lock, version, utcnow())
    click.echo(context.dockerfile, nl=False)


@env.command("build")
@click.argument("name")
@click.option("--no-promote", is_flag=True, help="Leave the new version succeeded but not current.")
@click.option("--force", is_flag=True, help="Make a new version even when nothing changed since the current one.")
@pass_ctx
def env_build(ctx: AsciContext, name: str, no_promote: bool, force: bool) -> None:
    """Build, verify, push and record a new version of NAME (then make it current); a build that
    would hold what the current version holds makes no version (unless --force)."""
    from builder.build import build_environment
    from builder.errors import UpToDate

    try:
        row = build_environment(ctx.settings, name, log=_log, promote=not no_promote, force=force)
    except UpToDate as exc:
        click.echo(str(exc))
        return
    click.echo(f"{name} {row.version} {row.status} {row.pull_reference}"
               + ("" if no_promote else " (current)"))


@env.command("promote")
@click.argument("name")
@click.argument("version")
@pass_ctx
def env_promote(ctx: AsciContext, name: str, version: str) -> None:
    """Make VERSION of NAME current (moves the registry's latest tag)."""
    from builder.versions import promote

    promote(ctx.settings, name, version)
    click.echo(f"{name} {version} is current")


@env.command("versions")
@click.argument("name")
@pass_ctx
def env_versions(ctx: AsciContext, name: str) -> None:
    """List the versions of NAME, oldest first."""
    from builder.versions import list_versions

    with _db(ctx.settings) as db:
        for row in list_versions(db, name):
            mark = "*" if row.environment.current_version == row.version else " "
            click.echo(f"{mark} {row.version:16} {row.status:10} {row.created_at:%Y-%m-%d %H:%M} "
                       f"{len(row.lock.get('packages', []))} rpms  {row.image_digest or row.error[:60]}")


def _show(row) -> list[str]:
    lines = [f"environment   {row.environment.name}", f"version       {row.version}", f"status        {row.status}",
             f"image         {row.image_reference}", f"pull          {row.pull_reference if row.image_digest else '-'}",
             f"created       {row.created_at.isoformat()}",
             f"current since {row.became_current_at.isoformat() if row.became_current_at else '-'}",
             f"recipe commit {row.recipe_commit}", f"lock digest   sha256:{row.lock_digest}",
             f"base image    {row.lock.get('base', {}).get('tag', '')} ({row.lock.get('base', {}).get('id', '')})",
             "packages:"]
    lines += [f"  {p['nevra']}  sha256:{p['sha256']}" for p in row.lock.get("packages", [])]
    lines.append(f"sbom          {len(row.sbom)} packages in the image")
    layers = row.layers or {}
    if layers.get("groups"):
        stack = layers.get("stack") or layers["groups"]
        dead = [layer for layer in stack if layer.get("dead")]
        lines.append(f"layers        {len(stack)} above the base + meta ({len(dead)} shadowed, "
                     f"{sum(layer['size'] for layer in dead) / 2**20:.1f} MiB); uploaded "
                     f"{layers.get('uploaded_bytes', 0) / 2**20:.1f} MiB, a node holding the previous version "
                     f"pulled {layers.get('pull_bytes', 0) / 2**20:.1f} MiB")
        lines += [f"  {g['id']:28} {g['digest'][:19]} {g['size'] / 2**20:8.2f} MiB  {' '.join(g['packages'])}"
                  for g in layers["groups"]]
    if row.deleted_at:
        lines.append(f"deleted       {row.deleted_at.isoformat()} (registry gc)")
    if row.error:
        lines.append(f"error         {row.error}")
    return lines


@env.command("show")
@click.argument("name")
@click.argument("version", required=False)
@click.option("--as-of", "as_of", metavar="DATE", help="The version that was current on DATE (YYYY-MM-DD or ISO).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON (lock, SBOM, Dockerfile).")
@pass_ctx
def env_show(ctx: AsciContext, name: str, version: str | None, as_of: str | None, as_json: bool) -> None:
    """Show a version of NAME: by VERSION, or the one current on --as-of DATE."""
    import json

    from builder import versions as v
    from builder.errors import VersionError

    if bool(version) == bool(as_of):
        raise VersionError("give either VERSION or --as-of DATE")
    with _db(ctx.settings) as db:
        row = v.get_version(db, name, version) if version else v.current_as_of(db, name, v.parse_when(as_of))
        if as_json:
            click.echo(json.dumps({"environment": name, "version": row.version, "status": row.status,
                                   "image_reference": row.image_reference, "image_digest": row.image_digest,
                                   "lock": row.lock, "lock_digest": row.lock_digest, "sbom": row.sbom,
                                   "recipe_commit": row.recipe_commit, "dockerfile": row.dockerfile,
                                   "created_at": row.created_at.isoformat(), "error": row.error}, indent=2))
        else:
            click.echo("\n".join(_show(row)))


@env.command("diff")
@click.argument("name")
@click.argument("old")
@click.argument("new")
@pass_ctx
def env_diff(ctx: AsciContext, name: str, old: str, new: str) -> None:
    """Packages added, removed, upgraded or downgraded from version OLD to NEW of NAME."""
    from builder.diff import diff_locks
    from builder.versions import get_version

    with _db(ctx.settings) as db:
        result = diff_locks(get_version(db, name, old).lock, get_version(db, name, new).lock)
    click.echo("\n".join(result.lines()))


@env.command("reproduce")
@click.argument("name")
@click.argument("version")
@click.option("--keep", is_flag=True, help="Keep the rebuilt image (asci-reproduce/NAME:VERSION).")
@click.option("--push", is_flag=True, help="Push the rebuild as VERSION-rN and record it (layers reuse the original's).")
@pass_ctx
def env_reproduce(ctx: AsciContext, name: str, version: str, keep: bool, push: bool) -> None:
    """Rebuild VERSION of NAME from its stored lock and prove the same NEVRA + sha256 set."""
    from builder.reproduce import reproduce

    click.echo("\n".join(reproduce(ctx.settings, name, version, log=_log, keep=keep, push=push).lines()))


@env.command("export")
@click.argument("name")
@click.argument("version")
@click.option("-o", "--output", "target", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The archive to write (an OCI image layout archive: skopeo's oci-archive:FILE).")
@pass_ctx
def env_export(ctx: AsciContext, name: str, version: str, target: Path) -> None:
    """Write VERSION of NAME into one self-contained archive: the image as the registry holds it (same
    manifest digest), its lock, SBOM, Dockerfile, build log, recipe and the locked RPM files."""
    from builder.archive import export_version

    result = export_version(ctx.settings, name, version, target, log=_log)
    click.echo(f"{target}: {name} {version} {result['digest']} ({result['archive_bytes'] / 2**20:.1f} MiB, "
               f"image {result['image_bytes'] / 2**20:.1f} MiB, {result['rpms']} RPMs)")


@env.command("verify")
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path))
@pass_ctx
def env_verify(ctx: AsciContext, archive: Path) -> None:
    """Check every digest and checksum of a version ARCHIVE (exit 2 naming each problem)."""
    from builder.archive import verify_archive

    click.echo("\n".join(verify_archive(archive, log=_log).lines()))


@env.command("import")
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path))
@pass_ctx
def env_import(ctx: AsciContext, archive: Path) -> None:
    """Restore the version in ARCHIVE into this platform (registry, version record, RPMs); verified first."""
    from builder.archive import import_archive

    click.echo("\n".join(import_archive(ctx.settings, archive, log=_log).lines()))
