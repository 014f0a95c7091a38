"""The build job queue, kept in the database and safe with several workers.

* :func:`enqueue` folds a new reason into the environment's queued job when there is one and
  pushes its start back by the debounce window, so a burst of publishes yields one build.
* :func:`claim` takes the oldest due job with ``SELECT ... FOR UPDATE SKIP LOCKED`` (PostgreSQL;
  SQLite serialises writers) and a guarded ``UPDATE``; a partial unique index keeps a second job
  of the same environment from running at the same time.
* A running job holds a lease that its worker renews (:func:`heartbeat`); :func:`reap_expired`
  puts the job of a worker that died back in the queue.
* :func:`finish` records the outcome; retryable failures go back to the queue with exponential
  back-off until ``max_attempts``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from asci.db import utcnow
from ci.errors import JobNotFound
from ci.models import BuildJob, JobState

MAX_DEBOUNCE_FACTOR = 10  # a job is never pushed back more than this many windows after creation


def _fold(job: BuildJob, reason: str, not_before: dt.datetime) -> BuildJob:
    if reason not in (job.reasons or []):
        job.reasons = [*(job.reasons or []), reason]
    job.not_before = max(job.not_before, not_before)
    return job


def enqueue(db: Session, environment: str, reason: str, debounce_s: float = 0.0,
            max_attempts: int = 3) -> BuildJob:
    """Queue a build of ``environment`` (or fold ``reason`` into the one already queued)."""
    now = utcnow()
    not_before = now + dt.timedelta(seconds=debounce_s)
    queued = select(BuildJob).where(BuildJob.environment == environment, BuildJob.state == JobState.QUEUED)
    job = db.scalar(queued.with_for_update())
    if job is not None:
        cap = job.created_at + dt.timedelta(seconds=debounce_s * MAX_DEBOUNCE_FACTOR)
        return _fold(job, reason, min(not_before, max(cap, job.not_before)))
    job = BuildJob(environment=environment, state=JobState.QUEUED, reasons=[reason], not_before=not_before,
                   max_attempts=max_attempts, created_at=now)
    try:
        with db.begin_nested():
            db.add(job)
    except IntegrityError:  # another process queued it first: fold into theirs
        job = db.scalar(queued.with_for_update())
        return _fold(job, reason, not_before)
    return job


def claim(db: Session, worker_id: str, lease_s: float) -> BuildJob | None:
    """Take the oldest due job and lease it to ``worker_id``; None when nothing is due."""
    now = utcnow()
    candidates = db.scalars(
        select(BuildJob.id).where(BuildJob.state == JobState.QUEUED, BuildJob.not_before <= now)
        .order_by(BuildJob.not_before, BuildJob.id).limit(10).with_for_update(skip_locked=True)).all()
    for job_id in candidates:
        try:
            with db.begin_nested():
                result = db.execute(
                    update(BuildJob).where(BuildJob.id == job_id, BuildJob.state == JobState.QUEUED)
                    .values(state=JobState.RUNNING, lease_owner=worker_id, started_at=now, finished_at=None,
                            lease_expires_at=now + dt.timedelta(seconds=lease_s),
                            attempts=BuildJob.attempts + 1)
                    .execution_options(synchronize_session=False))
        except IntegrityError:  # the same environment is already being built
            continue
        if result.rowcount == 1:
            job = db.get(BuildJob, job_id)
            db.refresh(job)
            return job
    return None


def heartbeat(db: Session, job_id: int, worker_id: str, lease_s: float) -> bool:
    """Renew the lease; False when the job is no longer this worker's (it must stop)."""
    result = db.execute(
        update(BuildJob).where(BuildJob.id == job_id, BuildJob.state == JobState.RUNNING,
                               BuildJob.lease_owner == worker_id)
        .values(lease_expires_at=utcnow() + dt.timedelta(seconds=lease_s))
        .execution_options(synchronize_session=False))
    return result.rowcount == 1


def record_log(db: Session, job_id: int, worker_id: str, log: str) -> bool:
    """Store the log of a running job so far (only while ``worker_id`` holds it); False otherwise."""
    result = db.execute(
        update(BuildJob).where(BuildJob.id == job_id, BuildJob.state == JobState.RUNNING,
                               BuildJob.lease_owner == worker_id)
        .values(log=log[-200_000:]).execution_options(synchronize_session=False))
    return result.rowcount == 1


def _requeue_or_fail(db: Session, job: BuildJob, error: str, retry_base_s: float) -> None:
    job.lease_owner = None
    job.lease_expires_at = None
    job.error = error
    if job.attempts >= job.max_attempts:
        job.state = JobState.FAILED
        job.finished_at = utcnow()
        return
    delay = retry_base_s * (2 ** max(job.attempts - 1, 0))
    job.not_before = utcnow() + dt.timedelta(seconds=delay)
    try:
        with db.begin_nested():
            job.state = JobState.QUEUED
            db.flush()
    except IntegrityError:  # newer changes already queued a job: let that one carry the retry
        job.state = JobState.FAILED
        job.finished_at = utcnow()
        newer = db.scalar(select(BuildJob).where(BuildJob.environment == job.environment,
                                                      BuildJob.state == JobState.QUEUED))
        if newer is not None:
            _fold(newer, f"retry of job {job.id}", newer.not_before)
            job.error = f"{error} (retry folded into job {newer.id})"


def finish(db: Session, job_id: int, worker_id: str, *, ok: bool, version: str | None = None,
           error: str = "", log: str = "", retryable: bool = False, retry_base_s: float = 10.0,
           unchanged: bool = False) -> BuildJob:
    """Record the outcome of the job ``worker_id`` holds (ignored when its lease was lost);
    ``unchanged``: it succeeded without making a version (``version`` is the current one)."""
    job = db.scalar(select(BuildJob).where(BuildJob.id == job_id).with_for_update())
    if job is None:
        raise JobNotFound(f"no build job {job_id}")
    if job.state != JobState.RUNNING or job.lease_owner != worker_id:
        return job  # the lease expired and someone else owns it now
    job.log = log[-200_000:]
    job.version = version or job.version
    if ok:
        job.state, job.error, job.finished_at = (JobState.UNCHANGED if unchanged else JobState.SUCCEEDED), "", utcnow()
        job.lease_owner = job.lease_expires_at = None
    elif retryable:
        _requeue_or_fail(db, job, error, retry_base_s)
    else:
        job.state, job.error, job.finished_at = JobState.FAILED, error, utcnow()
        job.lease_owner = job.lease_expires_at = None
    return job


def reap_expired(db: Session, retry_base_s: float = 10.0) -> list[BuildJob]:
    """Put running jobs whose lease ran out (their worker died) back in the queue."""
    expired = db.scalars(
        select(BuildJob).where(BuildJob.state == JobState.RUNNING, BuildJob.lease_expires_at < utcnow())
        .with_for_update(skip_locked=True)).all()
    for job in expired:
        _requeue_or_fail(db, job, f"lease of worker {job.lease_owner} expired: the worker stopped "
                                       "answering during the build", retry_base_s)
    return list(expired)


def get_job(db: Session, job_id: int) -> BuildJob:
    """The job with ``job_id`` or :class:`JobNotFound`."""
    job = db.get(BuildJob, job_id)
    if job is None:
        raise JobNotFound(f"no build job {job_id}")
    return job


def list_jobs(db: Session, state: str | None = None, environment: str | None = None,
              limit: int = 50) -> list[BuildJob]:
    """Newest jobs first, optionally of one state or environment."""
    query = select(BuildJob)
    if state:
        query = query.where(BuildJob.state == state)
    if environment:
        query = query.where(BuildJob.environment == environment)
    return list(db.scalars(query.order_by(BuildJob.id.desc()).limit(limit)))


def covered_until(db: Session, environment: str, version: str | None):
    """When the lock of ``version`` (the environment's current version) was resolved, at the latest:
    the start of the newest job that built it or found nothing changed since it. Repository events
    older than that are in the version already. None when no job is known (built by hand)."""
    if not version:
        return None
    return db.scalar(select(BuildJob.started_at).where(
        BuildJob.environment == environment, BuildJob.version == version,
        BuildJob.state.in_((JobState.SUCCEEDED, JobState.UNCHANGED))).order_by(BuildJob.started_at.desc()).limit(1))
