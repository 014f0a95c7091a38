"""``asci worker``: one loop that watches for changes and runs the queued builds.

Each tick: record repository changes made on disk by other means, turn new repository events
and recipe commits into debounced jobs, requeue jobs of dead workers, then claim one due job
and run it: ``builder`` builds, verifies and pushes a version (not current yet), the smoke
gate launches it like a session, and only then ``builder`` promotes it to current. While the
job runs a heartbeat thread renews its lease; webhooks report the outcome.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Callable

import builder
import rpmrepo
from asci.config import Settings
from asci.db import session_scope
from asci.errors import AsciError
from asci import logs
from asci.heartbeats import beat
from asci.progress import LogSink
from ci import changes, notify, queue
from ci.errors import GateFailed
from ci.models import FINISHED, BuildJob, JobState

log = logging.getLogger("asci.ci.worker")
PART = "worker"  # the name under which the worker's heartbeats are recorded
LOG_FLUSH_S = 2.0  # a running job's log reaches the database at least this often

Builder = Callable[..., object]


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def mark_abandoned_versions(settings: Settings, environment: str, job_id: int) -> int:
    """Versions left ``building``/``verifying`` by a worker that died are failed (we hold the env's only running job)."""
    return builder.fail_unfinished_versions(
        settings, environment, f"abandoned: the worker building it stopped; rebuilt by job {job_id}")


class Worker:
    """A build worker; several may run against one PostgreSQL database."""

    def __init__(self, settings: Settings, worker_id: str | None = None, *, echo: LogSink = print,
                 build: Builder | None = None, gate=None, promote=None, structured: bool = False) -> None:
        from ci.gate import smoke_test

        self.settings = settings
        self.structured = structured  # True: a job's lines are log events with its build id (asci.logs)
        self.worker_id = worker_id or default_worker_id()
        self.echo = echo
        self.build = build or builder.build_environment
        self.gate = gate or smoke_test
        self.promote = promote or builder.promote

    # -------------------------------------------------------------- watch
    def watch(self) -> list[str]:
        """Turn changes (repository events, external repodata edits, recipe commits) into jobs."""
        settings = self.settings
        with session_scope(settings) as db:
            rpmrepo.detect_external_changes(settings, db)
        with session_scope(settings) as db:
            queued = changes.consume_repo_events(settings, db, settings.ci_debounce_s, settings.ci_max_attempts)
        with session_scope(settings) as db:
            queued += changes.consume_recipe_commits(settings, db, settings.ci_debounce_s,
                                                     settings.ci_max_attempts)
        with session_scope(settings) as db:
            for job in queue.reap_expired(db, self.settings.ci_retry_base_s):
                self.echo(f"job {job.id} ({job.environment}): {job.error}")
        return queued

    # ---------------------------------------------------------------- run
    def claim(self) -> BuildJob | None:
        with session_scope(self.settings) as db:
            return queue.claim(db, self.worker_id, self.settings.ci_lease_s)

    def _heartbeat(self, job_id: int, stop: threading.Event, lost: threading.Event) -> None:
        interval = max(self.settings.ci_lease_s / 3, 0.2)
        while not stop.wait(interval):
            with session_scope(self.settings) as db:
                if not queue.heartbeat(db, job_id, self.worker_id, self.settings.ci_lease_s):
                    lost.set()
                    return
            beat(self.settings, PART, f"running job {job_id}")

    def run_job(self, job: BuildJob) -> BuildJob:
        """Build, gate and promote; record the outcome and notify."""
        stop, lost = threading.Event(), threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job.id, stop, lost), daemon=True)
        beat.start()
        lines: list[str] = []
        flushed = [time.monotonic()]

        def sink(line: str) -> None:
            lines.append(line)
            self._say(job, line)
            if time.monotonic() - flushed[0] >= LOG_FLUSH_S:  # administrators follow the log as it grows
                flushed[0] = time.monotonic()
                with session_scope(self.settings) as db:
                    queue.record_log(db, job.id, self.worker_id, "\n".join(lines))

        version, ok, error, retryable, unchanged = None, False, "", False, False
        try:
            abandoned = mark_abandoned_versions(self.settings, job.environment, job.id)
            if abandoned:
                sink(f"marked {abandoned} version(s) left by a stopped worker as failed")
            sink(f"building {job.environment} (attempt {job.attempts}/{job.max_attempts}): {'; '.join(job.reasons)}")
            row = self.build(self.settings, job.environment, log=sink, promote=False)
            version = row.version
            checks = list(builder.load_recipe(self.settings.recipes_dir, job.environment).checks)
            try:
                self.gate(self.settings, row.pull_reference, checks, job.environment, log=sink)
            except GateFailed as exc:
                builder.fail_version(self.settings, row.id, f"smoke test failed: {exc}")
                raise
            self.promote(self.settings, job.environment, version)
            sink(f"{job.environment} {version} passed the smoke test and is now current")
            ok = True
        except builder.UpToDate as exc:  # nothing changed: no version, no gate, nothing to promote
            version, ok, unchanged = exc.version, True, True
        except GateFailed as exc:
            error = f"smoke test failed: {exc}"
        except builder.DockerError as exc:
            error, retryable = str(exc), True
        except AsciError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - an unexpected failure is retried, then recorded
            log.exception("job %s crashed", job.id)
            error, retryable = f"{type(exc).__name__}: {exc}", True
        finally:
            stop.set()
            beat.join(timeout=5)
        if error:
            sink(f"FAILED: {error}")
        with session_scope(self.settings) as db:
            result = queue.finish(db, job.id, self.worker_id, ok=ok, version=version, error=error,
                                  log="\n".join(lines), retryable=retryable,
                                  retry_base_s=self.settings.ci_retry_base_s, unchanged=unchanged)
        logs.event("build.finished", build=job.id, environment=job.environment, version=version, state=result.state,
                   attempt=job.attempts, error=error or None)
        if result.state in (JobState.SUCCEEDED, JobState.FAILED):
            notify.notify(self.settings, result, "build.succeeded" if ok else "build.failed")
        return result

    def _say(self, job: BuildJob, line: str) -> None:
        if self.structured:
            logs.event("build.log", build=job.id, environment=job.environment, message=line)
        else:
            self.echo(f"[job {job.id} {job.environment}] {line}")

    def tick(self) -> BuildJob | None:
        """One round: watch for changes, then run at most one due job."""
        self.watch()
        job = self.claim()
        return self.run_job(job) if job is not None else None

    def run_environment(self, environment: str, reason: str, timeout_s: float = 900) -> BuildJob:
        """Queue a build of ``environment`` and run it in this process (what ``asci build run`` does)."""
        with session_scope(self.settings) as db:
            job_id = queue.enqueue(db, environment, reason, debounce_s=0,
                                   max_attempts=self.settings.ci_max_attempts).id
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.claim()
            if job is None:
                time.sleep(1)
                continue
            result = self.run_job(job)
            if job.id == job_id and result.state in FINISHED:
                return result
        with session_scope(self.settings) as db:
            return queue.get_job(db, job_id)

    def run_forever(self, stop: threading.Event | None = None, max_jobs: int | None = None) -> int:
        """Tick until ``stop`` is set (or ``max_jobs`` ran); returns the number of jobs run."""
        stop = stop or threading.Event()
        done = 0
        self.echo(f"worker {self.worker_id} watching (poll {self.settings.ci_poll_s}s, "
                  f"debounce {self.settings.ci_debounce_s}s)")
        while not stop.is_set():
            try:
                beat(self.settings, PART, "watching")
                job = self.tick()
            except AsciError as exc:
                self.echo(f"worker: {exc}")
                beat(self.settings, PART, f"round failed: {exc}", state="error")
                job = None
            if job is not None:
                done += 1
                if max_jobs is not None and done >= max_jobs:
                    break
                continue
            stop.wait(self.settings.ci_poll_s)
        return done
