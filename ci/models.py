"""Build jobs and the ci consumer's cursors."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import JSON, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from asci.db import Base, UTCDateTime, utcnow



class JobState(StrEnum):
    """Where a build job is."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    UNCHANGED = "unchanged"  # nothing changed since the current version: no version was made
    FAILED = "failed"
    CANCELLED = "cancelled"


STATES = tuple(state.value for state in JobState)
FINISHED = (JobState.SUCCEEDED, JobState.UNCHANGED, JobState.FAILED, JobState.CANCELLED)


class BuildJob(Base):
    """One requested build of an environment.

    At most one job per environment is ``queued`` (later changes coalesce into it: the debounce)
    and at most one is ``running``: both enforced by partial unique indexes, not by luck.
    """

    __tablename__ = "build_jobs"
    __table_args__ = (
        Index("uq_build_jobs_one_queued", "environment", unique=True,
              postgresql_where=text("state = 'queued'"), sqlite_where=text("state = 'queued'")),
        Index("uq_build_jobs_one_running", "environment", unique=True,
              postgresql_where=text("state = 'running'"), sqlite_where=text("state = 'running'")),
        Index("ix_build_jobs_state_not_before", "state", "not_before"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    environment: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED)
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    not_before: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    log: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    def as_dict(self) -> dict:
        """A JSON-ready view for the API and ``asci build show``."""
        def iso(value):
            return value.isoformat() if value else None

        return {"id": self.id, "environment": self.environment, "state": self.state,
                "reasons": list(self.reasons or []), "attempts": self.attempts,
                "max_attempts": self.max_attempts, "version": self.version, "error": self.error,
                "not_before": iso(self.not_before), "created_at": iso(self.created_at),
                "started_at": iso(self.started_at), "finished_at": iso(self.finished_at),
                "lease_owner": self.lease_owner, "lease_expires_at": iso(self.lease_expires_at)}


class CiCursor(Base):
    """Where a consumer stands: the last repository event handled, or a recipe's last commit."""

    __tablename__ = "ci_cursors"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    position: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
