"""The broker's structured log events (``asci.logs``: one JSON object per line, one field set, never secrets).

``event(name, **fields)`` logs at INFO on the ``asci.broker`` logger with the session, node and user ids
under their fixed names. VNC passwords and tokens are never passed as fields.
"""

from __future__ import annotations

import logging

from asci import logs as _logs
from asci.logs import JsonFormatter

__all__ = ["JsonFormatter", "LOGGER", "configure", "event"]

LOGGER = logging.getLogger("asci.broker")


def configure(log_format: str = "json", level: int = logging.INFO) -> None:
    """Log in ``log_format`` to stderr (idempotent; the part is whatever this process logs as)."""
    _logs.configure(log_format, level=level)


def event(name: str, level: int = logging.INFO, **fields) -> None:
    """Log ``name`` with structured ``fields``."""
    _logs.event(name, level, logger="asci.broker", **fields)
