"""``asci worker`` and ``asci build ...``: run rebuilds, and see or request them."""

from __future__ import annotations

import json
import time

import click

from asci.cli_context import AsciContext, pass_ctx
from asci.db import session_scope
from ci import queue
from ci.errors import CiError
from ci.models import STATES, JobState


@click.command("worker")
@click.option("--once", is_flag=True, help="Run one round (watch, then at most one job) and exit.")
@click.option("--max-jobs", type=int, help="Exit after running this many jobs.")
@click.option("--id", "worker_id", help="Worker name shown in leases (default: host:pid:random).")
@pass_ctx
def worker(ctx: AsciContext, once: bool, max_jobs: int | None, worker_id: str | None) -> None:
    """Watch the repository and the recipes, and run the queued builds with the smoke gate."""
    from ci.worker import Worker

    runner = Worker(ctx.settings, worker_id)
    if once:
        job = runner.tick()
        click.echo(f"job {job.id}: {job.state}" if job else "nothing to do")
        return
    try:
        runner.run_forever(max_jobs=max_jobs)
    except KeyboardInterrupt:
        click.echo("worker stopped")


@click.group("build")
def build() -> None:
    """Build jobs: list, show, queue, or run one here."""


@build.command("list")
@click.option("--state", type=click.Choice(STATES), help="Only jobs in this state.")
@click.option("--env", "environment", help="Only jobs of this environment.")
@click.option("--limit", default=30, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def build_list(ctx: AsciContext, state: str | None, environment: str | None, limit: int, as_json: bool) -> None:
    """List build jobs, newest first."""
    with session_scope(ctx.settings) as db:
        jobs = queue.list_jobs(db, state=state, environment=environment, limit=limit)
        if as_json:
            click.echo(json.dumps([job.as_dict() for job in jobs], indent=2))
            return
        for job in jobs:
            reasons = "; ".join(job.reasons or [])
            click.echo(f"{job.id:>5}  {job.environment:24} {job.state:10} {job.version or '-':16} "
                       f"{job.attempts}/{job.max_attempts}  {reasons[:60]}")


@build.command("show")
@click.argument("job_id", type=int)
@click.option("--log", "with_log", is_flag=True, help="Also print the job's log.")
@pass_ctx
def build_show(ctx: AsciContext, job_id: int, with_log: bool) -> None:
    """Show one build job."""
    with session_scope(ctx.settings) as db:
        job = queue.get_job(db, job_id)
        click.echo(json.dumps(job.as_dict(), indent=2))
        if with_log:
            click.echo(job.log)


def _check_environment(settings, environment: str) -> None:
    import builder

    builder.load_recipe(settings.recipes_dir, environment)  # raises a clear error for an unknown recipe


@build.command("enqueue")
@click.argument("environment")
@click.option("--reason", default="requested from the command line", show_default=True)
@click.option("--wait", is_flag=True, help="Wait until a worker finished the job; exit 1 if it failed.")
@click.option("--timeout", default=3600, show_default=True, help="Seconds --wait waits.")
@pass_ctx
def build_enqueue(ctx: AsciContext, environment: str, reason: str, wait: bool, timeout: int) -> None:
    """Queue a build of ENVIRONMENT for the workers (folds into one already queued)."""
    _check_environment(ctx.settings, environment)
    with session_scope(ctx.settings) as db:
        job = queue.enqueue(db, environment, reason, debounce_s=0, max_attempts=ctx.settings.ci_max_attempts)
        db.flush()
        job_id = job.id
    click.echo(f"queued job {job_id} for {environment}")
    if wait:
        _wait_for(ctx.settings, job_id, timeout)


def _wait_for(settings, job_id: int, timeout: int) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(settings) as db:
            job = queue.get_job(db, job_id)
            state, version, error, environment = job.state, job.version, job.error, job.environment
        if state == JobState.SUCCEEDED:
            click.echo(f"job {job_id} succeeded: version {version}")
            return
        if state == JobState.UNCHANGED:
            click.echo(f"job {job_id}: {environment} is up to date: {version}")
            return
        if state == JobState.FAILED:
            raise CiError(f"job {job_id} failed: {error}")
        time.sleep(2)
    raise CiError(f"job {job_id} did not finish within {timeout} s (state {state})")


@build.command("run")
@click.argument("environment")
@click.option("--reason", default="run from the command line", show_default=True)
@pass_ctx
def build_run(ctx: AsciContext, environment: str, reason: str) -> None:
    """Queue a build of ENVIRONMENT and run it in this process (build, smoke gate, promote)."""
    from ci.worker import Worker

    _check_environment(ctx.settings, environment)
    result = Worker(ctx.settings).run_environment(environment, reason)
    if result.state == JobState.SUCCEEDED:
        click.echo(f"{environment} {result.version} built, passed the smoke test and is current")
        return
    if result.state == JobState.UNCHANGED:
        click.echo(f"{environment} is up to date: {result.version}")
        return
    raise CiError(f"job {result.id} {result.state}: {result.error or 'not finished in time'}")
