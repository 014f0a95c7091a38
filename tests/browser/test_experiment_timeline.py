"""In Chromium: the experiment's timeline shows a band per version used and a mark per session; clicking
a band picks that day, and one click relaunches the version the experiment used then (a real desktop)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from asci.db import session_scope
from broker.models import DesktopSession
from tests.support import browser_log_in as log_in
from tests.unit.web.test_timeline import _history

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]


def test_the_timeline_and_relaunching_the_version_of_a_chosen_day(stack, browser, artifacts_dir):
    settings, world, base = stack["settings"], stack["world"], stack["url"]
    _history(settings, world)  # v1 on 1-2 March 2026, v2 on 5 March (same image: both launch here)
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    try:
        log_in(page, base, world["names"]["alice"])
        page.click(f'.experiment[data-experiment="{world["e1"]}"] .timeline-link')
        page.wait_for_url(f"{base}/experiments/{world['e1']}")
        svg = page.locator("#timeline svg")
        assert svg.is_visible()
        assert page.locator("#timeline rect.band").count() == 2
        assert page.locator("#timeline circle.session").count() == 4
        v1, v2 = (page.locator(f'#timeline rect.band[data-version="{v}"]').bounding_box() for v in ("v1", "v2"))
        assert v1["x"] < v2["x"] and v1["width"] > 0  # v1 was used before v2, left of it
        page.screenshot(path=str(artifacts_dir / "timeline.png"))

        page.locator('#timeline rect.band[data-version="v2"]').click()  # the band links to its first day
        page.wait_for_url(re.compile(r".*on=2026-03-05.*"))
        assert page.locator(".relaunch-version").inner_text() == "v2"

        page.fill("#on", "2026-03-02")
        page.click("#pick-day button[type=submit]")
        page.wait_for_url(re.compile(r".*on=2026-03-02.*"))
        assert page.locator(".relaunch-version").inner_text() == "v1"
        page.click("#relaunch button[type=submit]")
        page.wait_for_url(re.compile(r".*/sessions/\d+/(progress|desktop)$"))
        page.wait_for_url(re.compile(r".*/desktop$"), timeout=120_000)
        page.wait_for_selector('#vnc-status[data-state="connected"]', timeout=60_000)
        session_id = int(re.search(r"/sessions/(\d+)/", page.url).group(1))
        with session_scope(settings) as db:
            relaunched = db.get(DesktopSession, session_id)
            assert (relaunched.version, relaunched.experiment.code) == ("v1", world["e1"])
            assert relaunched.user_id == world["ids"]["alice"]
        page.goto(f"{base}/experiments/{world['e1']}")
        assert page.locator("#timeline circle.session").count() == 5  # the relaunch is on the timeline now
    finally:
        page.screenshot(path=str(artifacts_dir / "timeline-end.png"))
        context.close()
    with session_scope(settings) as db:
        assert db.scalar(select(DesktopSession).where(DesktopSession.id == session_id)).version == "v1"
