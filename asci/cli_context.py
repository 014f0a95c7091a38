"""What every ``asci`` sub-command receives: the CLI context. Registers no command.

Feature packages import :class:`AsciContext` and :data:`pass_ctx` from here, so a command module
can be imported on its own, before or without the ``asci`` command (``asci.cli``) that lists it.
"""

from __future__ import annotations

import click

from asci.config import Settings, load_settings


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
