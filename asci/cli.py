"""The ``asci`` command: one entry point, sub-commands grouped by package.

Expected failures (:class:`asci.errors.AsciError`) print one ``error:`` line
and exit non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from asci.config import Settings, load_settings
from asci.errors import AsciError

# (module, attribute) of each package's click command or group, imported when the CLI starts.
PACKAGE_GROUPS = [
    ("asci.cli_core", "db_group"),
    ("asci.cli_core", "user_group"),
    ("asci.cli_core", "serve"),
    ("asci.cli_core", "demo"),
    ("builder.cli", "base"),
    ("rpmrepo.cli", "rpm"),
    ("builder.cli", "env"),
    ("ci.cli", "worker"),
    ("ci.cli", "build"),
    ("broker.cli", "experiment"),
    ("broker.cli", "node"),
    ("broker.cli", "session"),
]


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
    for module_name, attribute in PACKAGE_GROUPS:
        cli.add_command(getattr(importlib.import_module(module_name), attribute))


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
