"""Whether a build would change anything: the lock's content compared with the current version's.

Two locks hold the same content when they name the same packages (NEVRA + sha256), the same base
image (its image id, the digest of its configuration), the same repository and requested specs, and
the same recipe text (its sha256). The recipe's commit is left out on purpose: a commit elsewhere in
the recipes repository changes no byte of the image.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from builder.lock import canonical_json
from builder.models import Environment, EnvironmentVersion, VersionStatus


def content_of(lock: dict) -> dict:
    """The parts of a lock that decide the image's content."""
    return {
        "repo": lock.get("repo"),
        "requested": sorted(lock.get("requested") or []),
        "packages": sorted((p.get("nevra"), p.get("sha256")) for p in lock.get("packages") or []),
        "base": (lock.get("base") or {}).get("id"),
        "recipe": (lock.get("recipe") or {}).get("sha256"),
    }


def content_digest(lock: dict) -> str:
    """SHA-256 (hex) of :func:`content_of` in canonical JSON."""
    return hashlib.sha256(canonical_json(content_of(lock)).encode()).hexdigest()


def same_content(old_lock: dict, new_lock: dict) -> bool:
    """True when both locks would build the same image content."""
    return bool(old_lock) and content_of(old_lock) == content_of(new_lock)


def up_to_date_with(db: Session, name: str, lock: dict) -> EnvironmentVersion | None:
    """The current version of ``name`` when ``lock`` equals its content (still pushed), else None."""
    environment = db.scalar(select(Environment).where(Environment.name == name))
    if environment is None or environment.current_version is None:
        return None
    row = db.scalar(select(EnvironmentVersion).where(EnvironmentVersion.environment_id == environment.id,
                                                     EnvironmentVersion.version == environment.current_version))
    if row is None or row.status != VersionStatus.SUCCEEDED or row.deleted_at is not None:
        return None
    return row if same_content(row.lock, lock) else None
