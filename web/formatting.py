"""Template filters shared by the pages."""

from __future__ import annotations

import datetime as dt


def when(value, seconds: bool = False) -> str:
    """A date-time (object or ISO string) as ``YYYY-MM-DD HH:MM[:SS]`` in UTC; "–" when missing."""
    if not value:
        return "–"
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc)
    return value.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def register(app) -> None:
    """Make the filters available to every template."""
    app.add_template_filter(when, "when")
