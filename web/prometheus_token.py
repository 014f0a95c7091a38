"""The token Prometheus scrapes ``/metrics`` with: a ``metrics`` token of a robot account, in a file."""

from __future__ import annotations

import os
from pathlib import Path

from asci import accounts
from asci.config import Settings
from asci.db import session_scope

PROMETHEUS_USER = "prometheus"  # the robot account whose metrics-scoped token Prometheus scrapes with


def write_metrics_token(settings: Settings, path: Path) -> str:
    """Issue a ``metrics`` token of the robot user into ``path`` (0600) unless the file holds one already."""
    if path.is_file() and path.read_text().strip():
        return f"metrics token: {path} exists, kept"
    path.parent.mkdir(parents=True, exist_ok=True)
    with session_scope(settings) as db:
        robot = db.query(accounts.User).filter_by(username=PROMETHEUS_USER).first()
        if robot is None:
            robot = accounts.create_user(db, PROMETHEUS_USER, display_name="Prometheus (metrics robot)")
        token = accounts.issue_token(db, robot, "prometheus", scopes=accounts.SCOPE_METRICS)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    return f"metrics token of {PROMETHEUS_USER}: written to {path}"
