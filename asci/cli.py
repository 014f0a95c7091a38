"""The ``asci`` command: one entry point, sub-commands grouped by package.

The core's own groups (``db``, ``user``) are added here; every package registers its groups
under the ``asci.commands`` entry point group (``pyproject.toml``), so the core names none of them.
Expected failures (:class:`asci.errors.AsciError`) print one ``error:`` line
and exit non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import click

from asci.config import Settings, load_settings
from asci.errors import AsciError

ENTRY_POINT_GROUP = "asci.commands"


class AsciContext:
    """What every sub-command receives: the settings, read once."""

    def __init__(self) -> None:
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings


pass_ctx = click.make_pass_decorator(AsciContext, ensure=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


def _register_groups() -> None:
    from asci.cli_core import db_group, settings_command, user_group

    cli.add_command(db_group)
    cli.add_command(user_group)
    cli.add_command(settings_command)
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        cli.add_command(entry.load(), entry.name)


_register_groups()


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
