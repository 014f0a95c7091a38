"""The database job queue on SQLite and PostgreSQL: debounce, claims, leases, retries."""

import datetime as dt
import multiprocessing
import time

import pytest
from sqlalchemy import select, update

from asci import db
from ci import queue
from ci.models import BuildJob, JobState


def _run(settings, fn, *args, **kwargs):
    with db.session_scope(settings) as session:
        return fn(session, *args, **kwargs)


def test_a_burst_of_changes_folds_into_one_queued_job(db_settings):
    for number in range(10):
        _run(db_settings, queue.enqueue, "mx", f"mx-lib 1.{number} published", debounce_s=3)
    with db.session_scope(db_settings) as session:
        jobs = session.scalars(select(BuildJob)).all()
        assert len(jobs) == 1
        assert jobs[0].state == JobState.QUEUED and len(jobs[0].reasons) == 10
        # the window moved with the last change: not due yet
    assert _run(db_settings, queue.claim, "w1", lease_s=30) is None


def test_due_jobs_are_claimed_once_and_one_build_per_environment_runs(db_settings):
    _run(db_settings, queue.enqueue, "mx", "first")
    _run(db_settings, queue.enqueue, "imaging", "first")
    first = _run(db_settings, queue.claim, "w1", lease_s=30)
    assert first.state == JobState.RUNNING and first.lease_owner == "w1" and first.attempts == 1
    # a new change of the running environment queues a second job, which must wait
    _run(db_settings, queue.enqueue, first.environment, "second change")
    second = _run(db_settings, queue.claim, "w2", lease_s=30)
    assert second is not None and second.environment != first.environment
    assert _run(db_settings, queue.claim, "w3", lease_s=30) is None
    _run(db_settings, queue.finish, first.id, "w1", ok=True, version="2026.11.25.1")
    third = _run(db_settings, queue.claim, "w3", lease_s=30)
    assert third.environment == first.environment and third.reasons == ["second change"]


def test_an_expired_lease_puts_the_job_back_and_the_dead_worker_cannot_finish_it(db_settings):
    _run(db_settings, queue.enqueue, "mx", "change")
    job = _run(db_settings, queue.claim, "dead-worker", lease_s=30)
    assert _run(db_settings, queue.heartbeat, job.id, "dead-worker", 30) is True
    with db.session_scope(db_settings) as session:  # time passes without heartbeats
        session.execute(update(BuildJob).values(lease_expires_at=db.utcnow() - dt.timedelta(seconds=1)))
    reaped = _run(db_settings, queue.reap_expired, retry_base_s=0)
    assert [j.id for j in reaped] == [job.id]
    assert _run(db_settings, queue.heartbeat, job.id, "dead-worker", 30) is False
    again = _run(db_settings, queue.claim, "w2", lease_s=30)
    assert again.id == job.id and again.attempts == 2 and "expired" in again.error
    late = _run(db_settings, queue.finish, job.id, "dead-worker", ok=False, error="late")
    assert late.state == JobState.RUNNING and late.lease_owner == "w2"


def test_retryable_failures_back_off_then_fail(db_settings):
    _run(db_settings, queue.enqueue, "mx", "change", max_attempts=2)
    job = _run(db_settings, queue.claim, "w1", lease_s=30)
    result = _run(db_settings, queue.finish, job.id, "w1", ok=False, error="daemon hiccup", retryable=True,
                  retry_base_s=60)
    assert result.state == JobState.QUEUED and result.not_before > db.utcnow() + dt.timedelta(seconds=50)
    assert _run(db_settings, queue.claim, "w1", lease_s=30) is None  # backing off
    with db.session_scope(db_settings) as session:
        session.execute(update(BuildJob).values(not_before=db.utcnow()))
    job = _run(db_settings, queue.claim, "w1", lease_s=30)
    result = _run(db_settings, queue.finish, job.id, "w1", ok=False, error="daemon hiccup", retryable=True)
    assert result.state == JobState.FAILED and result.attempts == 2 and result.finished_at is not None


def test_gate_failures_are_not_retried(db_settings):
    _run(db_settings, queue.enqueue, "mx", "change")
    job = _run(db_settings, queue.claim, "w1", lease_s=30)
    result = _run(db_settings, queue.finish, job.id, "w1", ok=False, error="check failed")
    assert result.state == JobState.FAILED and result.error == "check failed"


def _claim_loop(url, data_dir, worker, results):
    from asci.config import Settings

    settings = Settings(data_dir=data_dir, database_url=url)
    claimed = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with db.session_scope(settings) as session:
            job = queue.claim(session, worker, lease_s=60)
            if job is None:
                break
            claimed.append((job.id, job.environment))
        with db.session_scope(settings) as session:
            queue.finish(session, job.id, worker, ok=True)
    results.put(claimed)


@pytest.mark.postgres
def test_several_worker_processes_never_take_the_same_job(pg_settings):
    for number in range(40):
        _run(pg_settings, queue.enqueue, f"env-{number}", "change")
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=_claim_loop,
                               args=(pg_settings.effective_database_url, str(pg_settings.data_dir), f"w{n}", results))
               for n in range(4)]
    for worker in workers:
        worker.start()
    claimed = [item for _ in workers for item in results.get(timeout=60)]
    for worker in workers:
        worker.join(timeout=30)
    ids = [job_id for job_id, _ in claimed]
    assert len(ids) == 40 and len(set(ids)) == 40
    with db.session_scope(pg_settings) as session:
        assert {j.state for j in session.scalars(select(BuildJob))} == {JobState.SUCCEEDED}
