"""In Chromium: the administration page draws node usage over time, launch latency and failures per hour and
the build timeline (Chart.js), and shows a live thumbnail of a real running desktop (grabbed from its VNC
server); the owner sees the thumbnail on "My sessions", another user gets none. Screenshots in
test-artifacts/."""

from __future__ import annotations

import datetime as dt

import pytest

from asci import rfb
from asci.db import session_scope, utcnow
from broker import reconcile_loop
from broker.models import DesktopSession, NodeUsageSample, SessionState
from builder.models import EnvironmentVersion
from ci.models import BuildJob, JobState
from tests.support import browser_log_in as log_in, wait_for_js
from tests.support import user_of as user

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]

# how many non-background pixels a chart's canvas holds (a drawn chart has lines, bars and labels)
INKED = """(id) => { const c = document.getElementById(id); const d = c.getContext('2d')
  .getImageData(0, 0, c.width, c.height).data; let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }"""
THUMBNAIL = """(sel) => { const i = document.querySelector(sel);
  return i && i.complete && Number(i.dataset.loaded || 0) >= 1 ? i.naturalWidth : 0; }"""


def _history(settings, world) -> None:
    """A day of node samples, a few launches and builds of the past hours (what a running platform leaves)."""
    now = utcnow()
    with session_scope(settings) as db:
        version = db.query(EnvironmentVersion).filter_by(version="v1").one().id
        for minutes in range(24 * 60, 0, -20):
            load = (minutes // 20) % 9 * 0.4
            db.add(NodeUsageSample(at=now - dt.timedelta(minutes=minutes), node="node1", sessions=int(load // 0.4),
                                   guaranteed_cpus=load, schedulable_cpus=4.0,
                                   guaranteed_memory_bytes=int(load * (1 << 30)), schedulable_memory_bytes=8 << 30))
        for hour in range(1, 30):
            created = now - dt.timedelta(hours=hour, minutes=10)
            seconds = 3 + hour % 5
            failed = hour % 7 == 0
            db.add(DesktopSession(user_id=world["ids"]["bob"], experiment_id=2, environment_version_id=version,
                                  state=SessionState.FAILED if failed else SessionState.STOPPED, created_at=created,
                                  started_at=None if failed else created + dt.timedelta(seconds=seconds),
                                  stopped_at=created + dt.timedelta(seconds=seconds + 600)))
        for number, (state, hours_ago, minutes) in enumerate([(JobState.SUCCEEDED, 30, 6), (JobState.FAILED, 20, 2),
                                                              (JobState.SUCCEEDED, 8, 5), (JobState.CANCELLED, 4, 1)]):
            start = now - dt.timedelta(hours=hours_ago)
            db.add(BuildJob(environment=f"beamline-{number % 2}", state=state, started_at=start,
                            finished_at=start + dt.timedelta(minutes=minutes), not_before=start))


def test_the_administration_page_draws_charts_and_live_desktop_thumbnails(stack, browser, artifacts_dir):
    settings, world = stack["settings"], stack["world"]
    with session_scope(settings) as db:
        desktop = stack["broker"].launch(db, db.merge(user(settings, world, "alice")), world["env"], "current",
                                 world["e1"])
        session_id, socket, password = desktop.id, desktop.vnc_socket, desktop.vnc_password
    rfb.wait_for_desktop(socket, password, timeout=60)  # MATE has drawn its panel
    reconcile_loop(stack["broker"], 0, passes=1)  # records the current usage sample
    _history(settings, world)
    admin = browser.new_context(viewport={"width": 1280, "height": 1100}).new_page()
    owner = browser.new_context(viewport={"width": 1100, "height": 700}).new_page()
    try:
        log_in(admin, stack["url"], world["names"]["root"])
        admin.goto(stack["url"] + "/admin/")
        admin.wait_for_selector("#operations[data-drawn]", timeout=20_000)
        for chart in ("chart-node-cpus", "chart-node-memory", "chart-launches", "chart-builds"):
            assert admin.evaluate(INKED, chart) > 2000, chart
        selector = f'figure[data-session="{session_id}"] img.desktop-thumbnail'
        wait_for_js(admin, f"({THUMBNAIL})('{selector}') > 0", timeout=30_000)
        assert admin.evaluate(THUMBNAIL, selector) <= 320
        caption = admin.locator(f'figure[data-session="{session_id}"] figcaption').inner_text()
        assert world["names"]["alice"] in caption
        first = admin.evaluate(f"document.querySelector('{selector}').dataset.loaded")
        wait_for_js(admin, f"Number(document.querySelector('{selector}').dataset.loaded) > {first}",
                                timeout=20_000)  # refreshed every few seconds
        admin.screenshot(path=str(artifacts_dir / "admin-operations.png"), full_page=True)

        log_in(owner, stack["url"], world["names"]["alice"])
        owner.goto(stack["url"] + "/sessions")
        mine = f'tr[data-session="{session_id}"] img.desktop-thumbnail'
        wait_for_js(owner, f"({THUMBNAIL})('{mine}') > 0", timeout=30_000)
        owner.screenshot(path=str(artifacts_dir / "my-sessions-thumbnail.png"))
        png = owner.request.get(f"{stack['url']}/sessions/{session_id}/thumbnail.png")
        assert png.status == 200 and png.headers["content-type"] == "image/png" and png.body()[:4] == b"\x89PNG"
    except Exception:
        admin.screenshot(path=str(artifacts_dir / "admin-failure.png"), full_page=True)
        owner.screenshot(path=str(artifacts_dir / "owner-failure.png"))
        raise
    finally:
        admin.context.close()
        owner.context.close()
    intruder = browser.new_context().new_page()
    try:
        log_in(intruder, stack["url"], world["names"]["bob"])
        assert intruder.request.get(f"{stack['url']}/sessions/{session_id}/thumbnail.png").status == 404
        assert intruder.request.get(f"{stack['url']}/admin/operations.json").status == 403
    finally:
        intruder.context.close()
