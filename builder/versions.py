"""Environment versions in the database: numbering, lookup, history, and promotion to current.

Versions read and sort as dates: ``YYYY.MM.DD.N``, N counting the builds of one environment on
one (UTC) day, failed builds included, so a number is never given twice.
"""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from asci.config import Settings
from asci.db import session_scope, utcnow
from builder import registry
from builder.errors import UnknownVersion, VersionError
from builder.models import Environment, EnvironmentVersion, VersionStatus
from builder.recipes import Recipe

VERSION_RE = re.compile(r"^(\d{4})\.(\d{2})\.(\d{2})\.(\d{1,4})$")


def version_key(version: str) -> tuple[int, ...]:
    """Sort key of a version (``2026.11.25.10`` after ``2026.11.25.9``)."""
    match = VERSION_RE.match(version)
    if not match:
        raise VersionError(f"{version!r} is not a version (YYYY.MM.DD.N)")
    return tuple(int(part) for part in match.groups())


def next_version(db: Session, environment: Environment, today: dt.date, taken=()) -> str:
    """The next free version of ``environment`` on ``today``, also past tags ``taken`` in the registry."""
    prefix = f"{today:%Y.%m.%d}."
    used = list(db.scalars(select(EnvironmentVersion.version).where(
        EnvironmentVersion.environment_id == environment.id, EnvironmentVersion.version.startswith(prefix))))
    used += [tag for tag in taken if tag.startswith(prefix) and VERSION_RE.match(tag)]
    highest = max((version_key(v)[3] for v in used), default=0)
    return f"{prefix}{highest + 1}"


def upsert_environment(db: Session, recipe: Recipe, base_tag: str) -> Environment:
    """The environment row of ``recipe``, created or refreshed from the recipe."""
    environment = db.scalar(select(Environment).where(Environment.name == recipe.name))
    if environment is None:
        environment = Environment(name=recipe.name)
        db.add(environment)
    environment.beamline, environment.description, environment.base_image = (
        recipe.beamline, recipe.description, base_tag)
    db.flush()
    return environment


def start_version(settings: Settings, recipe: Recipe, base_tag: str, **fields) -> EnvironmentVersion:
    """Insert a ``building`` version with the next free number (retrying if another build took it)."""
    # A registry shared with another database (a second deployment, a reset demo) may hold tags
    # this database never recorded: a pushed version is immutable, so those numbers are skipped.
    taken = set(registry.list_tags(settings.registry, recipe.name))
    for _attempt in range(5):
        try:
            with session_scope(settings) as db:
                environment = upsert_environment(db, recipe, base_tag)
                row = EnvironmentVersion(environment_id=environment.id, status=VersionStatus.BUILDING,
                                         version=next_version(db, environment, utcnow().date(), taken),
                                         **fields)
                db.add(row)
                db.flush()
                return row
        except IntegrityError:
            continue
    raise VersionError(f"{recipe.name}: could not allocate a version number (concurrent builds?)")


def update_version(settings: Settings, version_id: int, **fields) -> EnvironmentVersion:
    """Set fields of a version row and return it."""
    with session_scope(settings) as db:
        row = db.get(EnvironmentVersion, version_id)
        for key, value in fields.items():
            setattr(row, key, value)
        return row


def fail_version(settings: Settings, version_id: int, error: str) -> EnvironmentVersion:
    """Record that a version failed after its build (e.g. the smoke test refused it): never current."""
    return update_version(settings, version_id, status=VersionStatus.FAILED, error=error,
                          finished_at=utcnow())


def fail_unfinished_versions(settings: Settings, name: str, reason: str) -> int:
    """Fail the versions of ``name`` left building or verifying (their builder stopped); returns how many.

    Only call this while holding the environment's only running build (ci's job lease).
    """
    with session_scope(settings) as db:
        rows = db.scalars(select(EnvironmentVersion).join(Environment).where(
            Environment.name == name,
            EnvironmentVersion.status.in_((VersionStatus.BUILDING, VersionStatus.VERIFYING)))).all()
        for row in rows:
            row.status, row.finished_at, row.error = VersionStatus.FAILED, utcnow(), reason
        return len(rows)


def find_environment(db: Session, name: str) -> Environment:
    environment = db.scalar(select(Environment).where(Environment.name == name))
    if environment is None:
        raise UnknownVersion(f"unknown environment {name!r} (never built)")
    return environment


def list_versions(db: Session, name: str) -> list[EnvironmentVersion]:
    """Every version of environment ``name``, oldest first."""
    environment = find_environment(db, name)
    rows = db.scalars(select(EnvironmentVersion).where(EnvironmentVersion.environment_id == environment.id))
    return sorted(rows, key=lambda r: version_key(r.version))


def get_version(db: Session, name: str, version: str) -> EnvironmentVersion:
    environment = find_environment(db, name)
    row = db.scalar(select(EnvironmentVersion).where(
        EnvironmentVersion.environment_id == environment.id, EnvironmentVersion.version == version))
    if row is None:
        raise UnknownVersion(f"{name} has no version {version!r}")
    return row


def layout_to_follow(db: Session, name: str) -> dict:
    """The recorded layers of the version nodes hold (the current one), else of the newest succeeded,
    still pushed version that has them ({} when none: the next build lays its layers out afresh)."""
    environment = db.scalar(select(Environment).where(Environment.name == name))
    if environment is None:
        return {}
    rows = db.scalars(select(EnvironmentVersion).where(
        EnvironmentVersion.environment_id == environment.id, EnvironmentVersion.status == VersionStatus.SUCCEEDED,
        EnvironmentVersion.deleted_at.is_(None)).order_by(EnvironmentVersion.id.desc())).all()
    current = [r for r in rows if r.version == environment.current_version and r.layers.get("groups")]
    newest = [r for r in rows if r.layers.get("groups")]
    chosen = (current or newest or [None])[0]
    return chosen.layers if chosen is not None else {}


def parse_when(text: str) -> dt.datetime:
    """A date (``2026-11-25``: the end of that UTC day) or an ISO date-time (UTC when no zone)."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = dt.date.fromisoformat(text)
            return dt.datetime.combine(day, dt.time.max, tzinfo=dt.timezone.utc)
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise VersionError(f"{text!r} is not a date (YYYY-MM-DD) or an ISO date-time") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def current_as_of(db: Session, name: str, when: dt.datetime) -> EnvironmentVersion:
    """The version of ``name`` that was current at ``when`` (the last promoted at or before it)."""
    environment = find_environment(db, name)
    row = db.scalar(select(EnvironmentVersion).where(
        EnvironmentVersion.environment_id == environment.id, EnvironmentVersion.became_current_at.is_not(None),
        EnvironmentVersion.became_current_at <= when).order_by(EnvironmentVersion.became_current_at.desc()).limit(1))
    if row is None:
        raise UnknownVersion(f"{name} had no current version on {when.isoformat()}")
    return row


def promote(settings: Settings, name: str, version: str) -> EnvironmentVersion:
    """Make a succeeded version current: move the registry's ``latest`` tag and record it."""
    with session_scope(settings) as db:
        row = get_version(db, name, version)
        if row.status != VersionStatus.SUCCEEDED or not row.image_digest:
            raise VersionError(f"{name} {version} is {row.status}; only a succeeded, pushed version can become current")
        if row.deleted_at is not None:
            raise VersionError(f"{name} {version} was deleted from the registry by garbage collection")
        registry_host, repository = row.image_reference.rsplit(":", 1)[0].split("/", 1)
        target = registry.connect(settings) if registry_host == settings.registry else registry_host
        digest = registry.copy_tag(target, repository, version, "latest")
        if digest and digest != row.image_digest:
            raise VersionError(f"{name} {version}: registry holds {digest}, the record says {row.image_digest}")
        row.became_current_at = utcnow()
        row.environment.current_version = version
        return row
