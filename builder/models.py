"""Environments and their versions: what was built, from what, and whether it is current."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from asci.db import Base, UTCDateTime, utcnow



class VersionStatus(StrEnum):
    """Where a version's build is; a version is launchable only when ``SUCCEEDED``."""

    BUILDING = "building"
    VERIFYING = "verifying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Environment(Base):
    """A desktop environment defined by a recipe (recipes/environments/<name>.yaml)."""

    __tablename__ = "environments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    beamline: Mapped[str] = mapped_column(String(64), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    base_image: Mapped[str] = mapped_column(String(128), default="")
    current_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    versions: Mapped[list["EnvironmentVersion"]] = relationship(
        back_populates="environment", order_by="EnvironmentVersion.id", cascade="all, delete-orphan")


class EnvironmentVersion(Base):
    """One build of an environment: image, lock, SBOM, recipe commit and log."""

    __tablename__ = "environment_versions"
    __table_args__ = (UniqueConstraint("environment_id", "version", name="uq_environment_versions_env_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"), index=True)
    version: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=VersionStatus.BUILDING)
    image_reference: Mapped[str] = mapped_column(String(255), default="")  # registry/name:version
    image_digest: Mapped[str] = mapped_column(String(80), default="")  # sha256:... of the pushed manifest
    image_id: Mapped[str] = mapped_column(String(80), default="")  # local image config id
    lock: Mapped[dict] = mapped_column(JSON, default=dict)
    lock_digest: Mapped[str] = mapped_column(String(64), default="")
    sbom: Mapped[list] = mapped_column(JSON, default=list)
    recipe_commit: Mapped[str] = mapped_column(String(64), default="")
    dockerfile: Mapped[str] = mapped_column(Text, default="")
    build_log: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    became_current_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    environment: Mapped[Environment] = relationship(back_populates="versions")

    @property
    def pull_reference(self) -> str:
        """``registry/name@sha256:...``: the immutable reference sessions launch."""
        repository = self.image_reference.rsplit(":", 1)[0]
        return f"{repository}@{self.image_digest}"
