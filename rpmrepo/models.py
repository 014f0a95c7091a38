"""Database index of the repositories: one row per published package, one per change event.

The folder (``<repos_dir>/<repo>/all/*.rpm``) is the truth; these tables index it so that the
builder and the web UI never parse repodata XML. ``asci rpm reindex`` rebuilds them from the folder.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

import asci.accounts  # noqa: F401  (defines the users table that published_by_id refers to)
from asci.nevra import format_nevra
from asci.db import Base, UTCDateTime, utcnow


class RpmPackage(Base):
    """A package published into a repository (never deleted; ``retracted`` hides it from new builds)."""

    __tablename__ = "rpm_packages"
    __table_args__ = (
        UniqueConstraint("repo", "name", "epoch", "version", "release", "arch", name="uq_rpm_packages_nevra"),
        UniqueConstraint("repo", "filename", name="uq_rpm_packages_filename"),
        Index("ix_rpm_packages_repo_name", "repo", "name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    repo: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[str] = mapped_column(String(100))
    release: Mapped[str] = mapped_column(String(100))
    arch: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    buildtime: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    summary: Mapped[str] = mapped_column(Text, default="")
    requires: Mapped[list[str]] = mapped_column(JSON, default=list)
    provides: Mapped[list[str]] = mapped_column(JSON, default=list)
    published_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    retracted: Mapped[bool] = mapped_column(Boolean, default=False)
    retracted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    @property
    def nevra(self) -> str:
        """``name-[epoch:]version-release.arch`` (epoch shown only when not 0)."""
        return format_nevra(self.name, self.epoch, self.version, self.release, self.arch)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description (what the HTTP API and ``asci rpm list --json`` show)."""
        return {
            "repo": self.repo, "nevra": self.nevra, "name": self.name, "epoch": self.epoch,
            "version": self.version, "release": self.release, "arch": self.arch,
            "filename": self.filename, "sha256": self.sha256, "size": self.size,
            "buildtime": self.buildtime.isoformat(), "summary": self.summary,
            "requires": list(self.requires or []), "provides": list(self.provides or []),
            "published_at": self.published_at.isoformat(), "published_by_id": self.published_by_id,
            "retracted": self.retracted,
            "retracted_at": self.retracted_at.isoformat() if self.retracted_at else None,
        }


class RepoEvent(Base):
    """A change of a repository's content: ``publish``, ``retract`` or ``external`` (seen on disk)."""

    __tablename__ = "repo_events"
    __table_args__ = (Index("ix_repo_events_repo", "repo"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    repo: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    packages: Mapped[list[str]] = mapped_column(JSON, default=list)
    revision: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {"id": self.id, "repo": self.repo, "kind": self.kind, "packages": list(self.packages or []),
                "revision": self.revision, "created_at": self.created_at.isoformat()}


class RepoGrant(Base):
    """A user's right to publish into one repository (granted by an administrator: ``asci repo grant``)."""

    __tablename__ = "repo_grants"
    __table_args__ = (UniqueConstraint("repo", "user_id", name="uq_repo_grants_repo_user"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repo: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    granted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    granted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
