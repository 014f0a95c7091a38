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
    # how the image is layered (builder.layers.Layout.to_json and push figures); {}: built as one RUN layer
    layers: Mapped[dict] = mapped_column(JSON, default=dict)
    # when ``asci registry gc`` deleted its manifest from the registry (the record stays; it no longer launches)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    environment: Mapped[Environment] = relationship(back_populates="versions")
    reproductions: Mapped[list["Reproduction"]] = relationship(
        back_populates="version", order_by="Reproduction.number", cascade="all, delete-orphan")

    @property
    def pull_reference(self) -> str:
        """``registry/name@sha256:...``: the immutable reference sessions launch."""
        repository = self.image_reference.rsplit(":", 1)[0]
        return f"{repository}@{self.image_digest}"


class Reproduction(Base):
    """A rebuild of a version from its lock pushed as ``VERSION-r<number>`` (``asci env reproduce --push``)."""

    __tablename__ = "reproductions"
    __table_args__ = (UniqueConstraint("environment_version_id", "number", name="uq_reproductions_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    environment_version_id: Mapped[int] = mapped_column(ForeignKey("environment_versions.id", ondelete="CASCADE"),
                                                        index=True)
    number: Mapped[int] = mapped_column()
    tag: Mapped[str] = mapped_column(String(48))  # VERSION-rN
    image_digest: Mapped[str] = mapped_column(String(80), default="")
    same_packages: Mapped[bool] = mapped_column(default=False)  # rpm -qa of the rebuild equals the original lock
    layers_same: Mapped[int] = mapped_column(default=0)  # package layers with the original's digest
    layers_total: Mapped[int] = mapped_column(default=0)  # package layers of the rebuild
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    version: Mapped[EnvironmentVersion] = relationship(back_populates="reproductions")
