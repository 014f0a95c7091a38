"""The experiment's timeline: the JSON, the picture (bands per version, marks per session), the relaunch of
the version used on a chosen day, who may see it, and registry gc keeping every version on it."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

import broker
from asci.accounts import User
from asci.db import session_scope
from broker.models import DesktopSession, Experiment
from builder.models import Environment, EnvironmentVersion, VersionStatus
from tests.support import csrf_of

UTC = dt.timezone.utc


def _history(settings, world):
    """v1 used by alice on 1 and 2 March (bob once on the 2nd), v2 by alice on 5 March; a session of E2."""
    with session_scope(settings) as db:
        env = db.scalar(select(Environment).where(Environment.name == world["env"]))
        v1 = db.scalar(select(EnvironmentVersion).where(EnvironmentVersion.environment_id == env.id,
                                                        EnvironmentVersion.version == "v1"))
        v2 = EnvironmentVersion(environment_id=env.id, version="v2", status=VersionStatus.SUCCEEDED,
                                image_reference=v1.image_reference, image_digest="sha256:" + "2" * 64)
        db.add(v2)
        db.flush()
        e1 = db.scalar(select(Experiment).where(Experiment.code == world["e1"]))
        e2 = db.scalar(select(Experiment).where(Experiment.code == world["e2"]))
        e2_member = world["ids"]["bob"]
        rows = [("alice", e1, v1, (3, 1, 9), 90), ("alice", e1, v1, (3, 2, 9), 30), ("root", e1, v1, (3, 2, 14), 10),
                ("alice", e1, v2, (3, 5, 10), 120), ("bob", e2, v2, (3, 6, 10), 5)]
        for who, experiment, version, (month, day, hour), minutes in rows:
            started = dt.datetime(2026, month, day, hour, tzinfo=UTC)
            db.add(DesktopSession(user_id=e2_member if who == "bob" else world["ids"][who],
                                  experiment_id=experiment.id, environment_version_id=version.id,
                                  environment=env.name, version=version.version, image=version.pull_reference,
                                  image_digest=version.image_digest, state="stopped", created_at=started,
                                  started_at=started, stopped_at=started + dt.timedelta(minutes=minutes)))


def test_the_timeline_api_lists_versions_sessions_and_people(settings, world, as_user):
    _history(settings, world)
    client = as_user("alice")
    reply = client.get(f"/api/experiments/{world['e1']}/timeline")
    assert reply.status_code == 200
    [env] = reply.get_json()["environments"]
    assert env["environment"] == world["env"]
    assert [(v["version"], v["sessions"], v["users"]) for v in env["versions"]] == [
        ("v1", 3, sorted([world["names"]["alice"], world["names"]["root"]])), ("v2", 1, [world["names"]["alice"]])]
    assert env["versions"][0]["first_used"].startswith("2026-03-01T09:00")
    assert env["versions"][0]["last_used"].startswith("2026-03-02T14:10")
    assert [s["duration_s"] for s in env["sessions"]] == [5400, 1800, 600, 7200]
    assert client.get(f"/api/experiments/{world['e2']}/timeline").status_code == 404  # not alice's experiment
    assert client.get("/api/experiments/NOPE/timeline").status_code == 404
    assert as_user("root").get(f"/api/experiments/{world['e2']}/timeline").status_code == 200  # administrators
    assert client.application.test_client().get(f"/api/experiments/{world['e1']}/timeline").status_code == 401


def test_the_picture_and_a_one_click_relaunch_of_the_version_used_that_day(settings, world, as_user):
    _history(settings, world)
    client = as_user("alice")
    page = client.get(f"/experiments/{world['e1']}").get_data(as_text=True)
    assert page.count('class="band"') == 2 and page.count('class="session"') == 4
    assert 'data-version="v1"' in page and 'data-version="v2"' in page and "<svg" in page
    assert f"/experiments/{world['e1']}" in client.get("/").get_data(as_text=True)  # linked from the home page
    for day, version in (("2026-03-02", "v1"), ("2026-03-04", "v1"), ("2026-03-05", "v2")):
        chosen = client.get(f"/experiments/{world['e1']}?on={day}").get_data(as_text=True)
        assert f"Relaunch {version}" in chosen, day
    assert "nothing used by 2026-02-01" in client.get(f"/experiments/{world['e1']}?on=2026-02-01").get_data(as_text=True)
    chosen = client.get(f"/experiments/{world['e1']}?on=2026-03-02").get_data(as_text=True)
    reply = client.post("/launch", data={"csrf_token": csrf_of(chosen), "environment": world["env"], "version": "v1",
                                         "experiment": world["e1"]})
    assert reply.status_code == 302 and reply.headers["Location"].endswith("/desktop")
    with session_scope(settings) as db:
        newest = db.scalar(select(DesktopSession).order_by(DesktopSession.id.desc()).limit(1))
        assert (newest.version, newest.experiment.code) == ("v1", world["e1"])
    assert as_user("alice").get(f"/experiments/{world['e2']}").status_code == 404


def test_registry_gc_protects_every_version_on_a_timeline(settings, world):
    _history(settings, world)
    with session_scope(settings) as db:
        protected = broker.versions_in_use(db)
        root = db.get(User, world["ids"]["root"])
        on_timelines = {(e.environment, b.version) for code in (world["e1"], world["e2"])
                        for e in broker.experiment_timeline(db, root, code).environments for b in e.bands}
    assert on_timelines == {(world["env"], "v1"), (world["env"], "v2")} and on_timelines <= protected
