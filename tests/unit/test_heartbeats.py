"""Heartbeats of the platform's parts: an ended instance is shown once, a part's older ended rows are pruned."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from asci.db import session_scope, utcnow
from asci.heartbeats import FORGET_AFTER, GONE_AFTER, STALE_AFTER, Heartbeat, beat, recent


def _rows(settings, part: str) -> dict[str, str]:
    with session_scope(settings) as db:
        return {row.instance: row.state for row in db.scalars(select(Heartbeat).where(Heartbeat.part == part))}


def _age(settings, instance: str, by: dt.timedelta) -> None:
    with session_scope(settings) as db:
        db.execute(update(Heartbeat).where(Heartbeat.instance == instance).values(beat_at=utcnow() - by))


def _shown(settings) -> list[tuple[str, str, str]]:
    with session_scope(settings) as db:
        return [(status.part, status.instance, status.shown_state) for status in recent(db)]


def test_a_crashing_part_shows_its_last_crash_once_and_its_older_rows_go(settings):
    for pid in (1, 2, 3):  # asci serve restarts a crashing worker: a new instance each time
        beat(settings, "worker", "started by asci serve", instance=f"h:{pid}", restarts=pid - 1)
        beat(settings, "worker", "exited with status 3", instance=f"h:{pid}", state="crashed", restarts=pid - 1)
    beat(settings, "worker", "started by asci serve", instance="h:4", restarts=3)
    assert _rows(settings, "worker") == {"h:3": "crashed", "h:4": "running"}
    assert _shown(settings) == [("worker", "h:4", "running"), ("worker", "h:3", "ended")]
    beat(settings, "worker", "stopped by asci serve", instance="h:4", state="stopped", restarts=3)
    assert _rows(settings, "worker") == {"h:4": "stopped"}
    assert _shown(settings) == [("worker", "h:4", "ended")]


def test_a_part_that_died_without_a_word_is_silent_then_ended_once(settings):
    beat(settings, "worker", "watching", instance="setup:10")  # a worker of a set-up run, killed later
    beat(settings, "worker", "watching", instance="setup:11")
    beat(settings, "cull", "{}", instance="h:7")
    _age(settings, "setup:10", STALE_AFTER + dt.timedelta(seconds=5))
    assert ("worker", "setup:10", "silent") in _shown(settings)
    _age(settings, "setup:10", GONE_AFTER + dt.timedelta(minutes=2))
    _age(settings, "setup:11", GONE_AFTER + dt.timedelta(minutes=1))
    assert _shown(settings) == [("cull", "h:7", "running"), ("worker", "setup:11", "ended")]
    with session_scope(settings) as db:
        [status] = [status for status in recent(db) if status.part == "worker"]
        assert status.ended and not status.silent and status.as_dict()["ended"] is True
    beat(settings, "worker", "watching", instance="h:8")  # the next worker prunes what is not shown
    assert _rows(settings, "worker") == {"setup:11": "running", "h:8": "running"}
    assert _shown(settings)[1:] == [("worker", "h:8", "running"), ("worker", "setup:11", "ended")]
    assert _rows(settings, "cull") == {"h:7": "running"}  # a beat prunes its own part's ended rows only


def test_rows_silent_for_a_day_are_forgotten_by_any_beat(settings):
    beat(settings, "reconcile", "{}", instance="old:1", state="crashed")
    _age(settings, "old:1", FORGET_AFTER + dt.timedelta(minutes=1))
    beat(settings, "cull", "{}", instance="h:1")
    assert _rows(settings, "reconcile") == {}


def test_the_admin_page_shows_an_ended_part_once(settings, tmp_path):
    from web import create_app
    from tests.support import login

    from asci import accounts

    with session_scope(settings) as db:
        accounts.create_user(db, "root", "correct horse", is_admin=True)
    for pid in (1, 2):
        beat(settings, "worker", "exited with status 3", instance=f"h:{pid}", state="crashed")
    beat(settings, "worker", "watching", instance="h:3")
    client = create_app(settings, {"TESTING": True}).test_client()
    assert login(client, "root", "correct horse").status_code == 302
    page = client.get("/admin/").get_data(as_text=True)
    assert page.count('data-part="worker"') == 2
    assert page.count('data-state="ended"') == 1 and 'data-state="running"' in page
    assert "h:1" not in page and "(crashed)" in page
