"""What other packages read about environments and versions (they never query the builder's tables).

* ``launchable_version`` - the broker's lookup of the exact image a session runs;
* ``environment_summaries`` / ``environment_ids`` - names, descriptions, current versions;
* ``current_images`` - what nodes should hold (``asci node prepull``);
* ``recent_versions`` / ``version_record`` - the administrators' build views;
* ``newest_lock`` - what ci compares a change of packages against.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from builder.errors import NotLaunchable, UnknownVersion
from builder.models import Environment, EnvironmentVersion, VersionStatus


@dataclass(frozen=True)
class LaunchableVersion:
    """A succeeded, pushed version: what a session runs."""

    id: int
    environment_id: int
    environment: str
    version: str
    image: str  # registry/name@sha256:...
    image_digest: str


@dataclass(frozen=True)
class EnvironmentSummary:
    """An environment as a list shows it."""

    id: int
    name: str
    beamline: str
    description: str
    current_version: str | None


def launchable_version(db: Session, environment: str, version: str = "current") -> LaunchableVersion:
    """The version to launch (``current`` or an exact one); UnknownVersion or NotLaunchable otherwise."""
    env = db.scalar(select(Environment).where(Environment.name == environment))
    if env is None:
        raise UnknownVersion(f"unknown environment {environment!r}")
    wanted = env.current_version if version == "current" else version
    if wanted is None:
        raise UnknownVersion(f"environment {environment!r} has no current version yet")
    row = db.scalar(select(EnvironmentVersion).where(EnvironmentVersion.environment_id == env.id,
                                                     EnvironmentVersion.version == wanted))
    if row is None:
        raise UnknownVersion(f"environment {environment!r} has no version {wanted!r}")
    if row.status != VersionStatus.SUCCEEDED or not row.image_digest:
        raise NotLaunchable(f"version {wanted} of {environment!r} cannot be launched (build {row.status})")
    if row.deleted_at is not None:
        raise NotLaunchable(f"version {wanted} of {environment!r} was deleted from the registry (never promoted)")
    return LaunchableVersion(row.id, env.id, env.name, row.version, row.pull_reference, row.image_digest)


def environment_summaries(db: Session, ids=None) -> list[EnvironmentSummary]:
    """Environments (those with ``ids`` when given), by name."""
    query = select(Environment).order_by(Environment.name)
    if ids is not None:
        query = query.where(Environment.id.in_(list(ids)))
    return [EnvironmentSummary(e.id, e.name, e.beamline, e.description, e.current_version) for e in db.scalars(query)]


def environment_ids(db: Session, names) -> dict[str, int]:
    """``name → id`` of the known environments among ``names``."""
    names = list(names)
    if not names:
        return {}
    return dict(db.execute(select(Environment.name, Environment.id).where(Environment.name.in_(names))).all())


def current_version(db: Session, name: str) -> str | None:
    """The current version of environment ``name`` (None when it has none or is unknown)."""
    return db.scalar(select(Environment.current_version).where(Environment.name == name))


def current_images(db: Session) -> list[str]:
    """``registry/name@sha256:...`` of every environment's current version."""
    rows = db.scalars(select(EnvironmentVersion).join(Environment).where(
        EnvironmentVersion.version == Environment.current_version,
        EnvironmentVersion.status == VersionStatus.SUCCEEDED, EnvironmentVersion.image_digest != ""))
    return [row.pull_reference for row in rows]


def recent_versions(db: Session, limit: int = 300) -> list[dict]:
    """The newest versions of every environment (the administrators' build list)."""
    rows = db.scalars(select(EnvironmentVersion).join(Environment)
                      .order_by(EnvironmentVersion.id.desc()).limit(limit))
    return [{"id": v.id, "environment": v.environment.name, "version": v.version, "status": v.status,
             "created_at": v.created_at, "finished_at": v.finished_at, "error": v.error,
             "current": v.environment.current_version == v.version} for v in rows]


def version_record(db: Session, version_id: int) -> dict:
    """Everything recorded about one version: log, Dockerfile, lock, image."""
    version = db.get(EnvironmentVersion, version_id)
    if version is None:
        raise UnknownVersion(f"no version with id {version_id}")
    return {"environment": version.environment.name, "version": version.version, "status": version.status,
            "log": version.build_log, "error": version.error, "dockerfile": version.dockerfile,
            "lock": version.lock, "image": version.image_reference, "digest": version.image_digest}


def newest_lock(db: Session, environment: str) -> dict:
    """The lock of the environment's newest succeeded version ({} when it has none)."""
    version = db.scalar(
        select(EnvironmentVersion).join(Environment)
        .where(Environment.name == environment, EnvironmentVersion.status == VersionStatus.SUCCEEDED)
        .order_by(EnvironmentVersion.id.desc()).limit(1))
    return version.lock if version is not None else {}
