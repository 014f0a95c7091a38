"""Structured logs: every part writes one JSON object per line with one field set, never secrets.

Every line has ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``part`` (web, websockify, worker,
reconcile, cull, serve, or cli), ``event`` (a dotted name such as ``session.running``; ``log`` for a line
of a library's own logging), ``logger`` and ``message``; the ids it concerns under fixed names:
``session``, ``build``, ``node``, ``user``, ``environment``, ``version`` (omitted when a line concerns none),
then any other field of the event. ``docs/operations.md`` shows how to ship these lines.

``configure(log_format, part)`` gives the root logger one stderr handler in that format (so waitress,
websockify and every ``logging`` user of a part come out the same way); ``event(name, **fields)`` logs one
event; ``adopt_handlers(part)`` re-formats handlers a library installed itself (websockify does).
"""

from __future__ import annotations

import datetime as dt
import json
import logging

ID_FIELDS = ("session", "build", "node", "user", "environment", "version")
_state = {"part": "cli"}
LOGGER = logging.getLogger("asci")
QUIET_LOGGERS = ("alembic",)  # libraries whose INFO lines are kept out


def current_part() -> str:
    """The part this process logs as."""
    return _state["part"]


class JsonFormatter(logging.Formatter):
    """A record as one JSON line: the fixed fields, the ids, then the event's other fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields = dict(getattr(record, "fields", {}) or {})
        payload = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "part": _state["part"],
            "event": fields.pop("event", "log"),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ID_FIELDS:
            value = fields.pop(key, None)
            if value is not None:
                payload[key] = value
        payload.update({key: value for key, value in fields.items() if key not in payload})
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    """The same record for people: time, level, part, event, message and the fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields = dict(getattr(record, "fields", {}) or {})
        event = fields.pop("event", "log")
        extra = " ".join(f"{key}={value}" for key, value in fields.items())
        stamp = dt.datetime.fromtimestamp(record.created, dt.timezone.utc).strftime("%H:%M:%S")
        line = f"{stamp} {record.levelname.lower()} {_state['part']} {event}: {record.getMessage()}"
        line = f"{line} {extra}" if extra and event != record.getMessage() else line
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``log_format`` (``json`` or ``text``)."""
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure(log_format: str = "json", part: str | None = None, level: int = logging.INFO) -> None:
    """Log as ``part`` in ``log_format`` to stderr: one handler on the root logger (idempotent)."""
    if part:
        _state["part"] = part
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, "_asci", False):
            handler.setFormatter(formatter(log_format))
            break
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(formatter(log_format))
        handler._asci = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    if root.level > level or root.level == logging.NOTSET:
        root.setLevel(level)
    LOGGER.setLevel(level)
    for chatty in QUIET_LOGGERS:  # a line per health check is noise, not an event
        logging.getLogger(chatty).setLevel(max(level, logging.WARNING))


def adopt_handlers(part: str, log_format: str = "json") -> None:
    """Log as ``part`` and re-format the root logger's handlers (those a library added) in ``log_format``."""
    _state["part"] = part
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter(log_format))


def event(name: str, level: int = logging.INFO, logger: str = "asci", **fields) -> None:
    """Log the event ``name`` with ``fields`` (ids under :data:`ID_FIELDS` names; never a secret)."""
    logging.getLogger(logger).log(level, fields.pop("message", name), extra={"fields": {"event": name, **fields}})
