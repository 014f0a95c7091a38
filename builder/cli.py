"""``asci base ...``: base desktop images (``asci env ...`` arrives with the builder)."""

from __future__ import annotations

import click

from asci.cli import AsciContext, pass_ctx
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
    """Build base image NAME (skipped when its tag exists); prints the tag."""
    definition = base_images.load_definition(ctx.settings.recipes_dir, name)
    client = docker_engine.client_for(ctx.settings.docker_hosts[0])
    tag = base_images.build_base_image(definition, client, log=lambda line: click.echo(line, err=True),
                                       force=force)
    click.echo(tag)
