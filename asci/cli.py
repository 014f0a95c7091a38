"""The ``asci`` command: one entry point, sub-commands grouped by package.

The core's own groups (``db``, ``user``) are added here; every package registers its groups
under the ``asci.commands`` entry point group (``pyproject.toml``), so the core names none of them.
The groups are loaded when the command runs (the first lookup), not when this module is imported;
the context the commands receive lives in :mod:`asci.cli_context`.
Expected failures (:class:`asci.errors.AsciError`) print one ``error:`` line
and exit non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import click

from asci.cli_context import AsciContext
from asci.errors import AsciError

ENTRY_POINT_GROUP = "asci.commands"


class _PackageGroups(click.Group):
    """The top-level group: the core's groups and the packages' entry points, loaded when first asked for.

    Nothing is registered at import time, so any command module can be imported on its own.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        from asci.cli_core import db_group, user_group

        self.add_command(db_group)
        self.add_command(user_group)
        for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            self.add_command(entry.load(), entry.name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._load()
        return super().get_command(ctx, cmd_name)


@click.group(cls=_PackageGroups, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="asci")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """ASCI: publish beamline RPMs, build version-tagged desktop environments
    and launch them in the browser.

    Settings come from the TOML file named by ASCI_CONFIG and from ASCI_*
    environment variables (ASCI_DATA_DIR, ASCI_DATABASE_URL, ASCI_REGISTRY,
    ASCI_DOCKER_HOSTS, ...).
    """
    ctx.ensure_object(AsciContext)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; expected errors become one line on stderr and a non-zero exit."""
    try:
        cli.main(args=argv, prog_name="asci", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except AsciError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
