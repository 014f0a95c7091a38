"""An environment's version history as people read it: each built version with its package
changes from the previous one (``diff.diff_locks``), and which version was current on a date
(``versions.current_as_of``: the last one promoted by then; a version never promoted never was)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from builder.citation import persistent_id
from builder.diff import diff_locks
from builder.errors import VersionError
from builder.models import Environment, EnvironmentVersion, VersionStatus
from builder.versions import current_as_of

CHANGE_KINDS = ("added", "removed", "upgraded", "downgraded", "rebuilt")
_PLAIN_ARCHES = ("noarch", "x86_64")


@dataclass(frozen=True)
class Change:
    """One line of a version's changes: a package (``kind`` one of ``CHANGE_KINDS``) or ``other``."""

    name: str
    kind: str
    old: str = ""
    new: str = ""


@dataclass
class VersionRow:
    """A built version in the history."""

    version: str
    status: str
    created_at: dt.datetime
    became_current_at: dt.datetime | None
    is_current: bool
    changes: list[Change] = field(default_factory=list)
    first: bool = False
    identifier: str = ""  # the persistent identifier citations name (builder.citation)


def changes_between(old_lock: dict, new_lock: dict) -> list[Change]:
    """The package changes from ``old_lock`` to ``new_lock``, by name; base image and recipe last."""
    result = diff_locks(old_lock or {}, new_lock or {})
    changes = []
    for kind in CHANGE_KINDS:
        for entry in getattr(result, kind):
            name = entry["name"] if entry["arch"] in _PLAIN_ARCHES else f"{entry['name']}.{entry['arch']}"
            changes.append(Change(name, kind, entry["old"] or "", entry["new"] or ""))
    changes.sort(key=lambda change: change.name)
    return changes + [Change(line, "other") for line in result.other]


def history_of(environment: Environment) -> list[VersionRow]:
    """The environment's built versions, newest first, each with its changes from the previous built one."""
    rows: list[VersionRow] = []
    previous: EnvironmentVersion | None = None
    for version in sorted(environment.versions, key=lambda v: v.id):
        if version.status != VersionStatus.SUCCEEDED:
            continue
        changes = [] if previous is None else changes_between(previous.lock, version.lock)
        identifier = persistent_id(environment.name, version.version, version.lock_digest) if version.lock_digest else ""
        rows.append(VersionRow(version.version, version.status, version.created_at, version.became_current_at,
                               version.version == environment.current_version, changes, first=previous is None,
                               identifier=identifier))
        previous = version
    return list(reversed(rows))


def version_history(db: Session, name: str) -> list[VersionRow]:
    """The history of environment ``name`` (empty when it was never built)."""
    environment = db.scalar(select(Environment).where(Environment.name == name))
    return history_of(environment) if environment is not None else []


def current_on(db: Session, name: str, day: dt.date) -> str | None:
    """The version of ``name`` current at the end of ``day`` (UTC), or None when none was yet."""
    end = dt.datetime.combine(day, dt.time.max, tzinfo=dt.timezone.utc)
    try:
        return current_as_of(db, name, end).version
    except VersionError:
        return None
