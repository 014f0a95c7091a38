"""How long-running work reports what it is doing: a log sink is a function taking one line."""

from __future__ import annotations

from typing import Callable

LogSink = Callable[[str], None]
"""Receives one human-readable line per step (``print``, a list's ``append``, a job log)."""


def discard(line: str) -> None:
    """A log sink that drops every line."""
