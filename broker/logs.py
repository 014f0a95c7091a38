"""Structured logs: one JSON object per line (``settings.log_format == "json"``), never secrets.

``event(name, **fields)`` logs at INFO on the ``asci.broker`` logger; the
formatter puts the fields beside time, level, logger and message. VNC
passwords and tokens are never passed as fields.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

LOGGER = logging.getLogger("asci.broker")


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON line with its ``fields`` extra."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, sort_keys=False)


def configure(log_format: str = "json", level: int = logging.INFO) -> None:
    """Give the broker logger one stderr handler in the chosen format (idempotent)."""
    if any(getattr(handler, "_asci_broker", False) for handler in LOGGER.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s %(fields)s"))
    handler._asci_broker = True  # type: ignore[attr-defined]
    LOGGER.addHandler(handler)
    LOGGER.setLevel(level)


def event(name: str, level: int = logging.INFO, **fields) -> None:
    """Log ``name`` with structured ``fields``."""
    LOGGER.log(level, name, extra={"fields": {"event": name, **fields}})
