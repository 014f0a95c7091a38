"""In Chromium: an administrator watching a running build job sees its log grow as the worker records it
(every LOG_FLUSH_S), and the job's outcome when it ends, without reloading the page."""

from __future__ import annotations

import pytest

from asci.db import session_scope, utcnow
from ci import queue
from ci.models import BuildJob, JobState
from tests.support import browser_log_in as log_in, wait_for_js
from tests.support import make_world, serving

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_a_running_builds_log_follows_the_worker(settings, browser, artifacts_dir):
    from web import create_app

    world = make_world(settings, [])
    with session_scope(settings) as db:
        job = BuildJob(environment="demo", state=JobState.RUNNING, reasons=["asci demo"], lease_owner="w1",
                       started_at=utcnow(), attempts=1, log="building demo (attempt 1/3)")
        db.add(job)
        db.flush()
        job_id = job.id
    page = browser.new_context().new_page()
    with serving(create_app(settings)) as url:
        try:
            log_in(page, url, world["names"]["root"])
            page.goto(f"{url}/admin/builds/jobs/{job_id}")
            assert "building demo" in page.locator("#job-log").inner_text()
            with session_scope(settings) as db:
                assert queue.record_log(db, job_id, "w1", "building demo (attempt 1/3)\nStep 2/3 : RUN dnf install")
            wait_for_js(page, "document.getElementById('job-log').textContent.includes('Step 2/3')",
                                   timeout=15_000)
            page.screenshot(path=str(artifacts_dir / "build-log-running.png"))
            with session_scope(settings) as db:
                queue.finish(db, job_id, "w1", ok=True, version="2026.12.06.1",
                             log="building demo (attempt 1/3)\nStep 2/3 : RUN dnf install\ndemo is now current")
            wait_for_js(page, "document.getElementById('job-state').textContent === 'succeeded'", timeout=15_000)
            assert "now current" in page.locator("#job-log").inner_text()
            assert page.locator("#job-version").inner_text() == "2026.12.06.1"
            page.screenshot(path=str(artifacts_dir / "build-log-finished.png"))
        finally:
            page.context.close()
