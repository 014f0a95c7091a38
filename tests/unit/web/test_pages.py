"""Home page with experiments and version history; launch, progress, desktop, stop; admin pages."""

import datetime as dt
import threading
import time

from sqlalchemy import select

from asci.db import session_scope
from broker.models import DesktopSession
from builder.models import Environment, EnvironmentVersion, VersionStatus
from tests.support import csrf_of


def _pkg(name, version, release="1"):
    return {"name": name, "epoch": 0, "version": version, "release": release, "arch": "noarch"}


def _add_versions(settings, world):
    """v1 (from the world) gets a lock; v2 changes one package, adds one; v2 becomes current on 2026-03-01."""
    with session_scope(settings) as db:
        env = db.scalar(select(Environment).where(Environment.name == world["env"]))
        v1 = db.scalar(select(EnvironmentVersion).where(EnvironmentVersion.environment_id == env.id,
                                                        EnvironmentVersion.version == "v1"))
        v1.lock = {"packages": [_pkg("mx-tools", "1.0"), _pkg("numpy-extra", "2.0")]}
        v1.became_current_at = dt.datetime(2026, 1, 10, tzinfo=dt.timezone.utc)
        v1.created_at = dt.datetime(2026, 1, 10, tzinfo=dt.timezone.utc)
        db.add(EnvironmentVersion(environment_id=env.id, version="v2", status=VersionStatus.SUCCEEDED,
                                  image_reference=v1.image_reference, image_digest=v1.image_digest,
                                  lock={"packages": [_pkg("mx-tools", "1.1"), _pkg("numpy-extra", "2.0"),
                                                     _pkg("xds-helper", "0.3")]},
                                  created_at=dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc),
                                  became_current_at=dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)))
        env.current_version = "v2"


def test_home_lists_my_experiments_environments_and_history(settings, world, as_user):
    _add_versions(settings, world)
    page = as_user("alice").get("/").get_data(as_text=True)
    assert world["e1"] in page and world["e2"] not in page  # only alice's experiment
    assert world["env"] in page
    assert "mx-tools 1.0-1 → 1.1-1" in page and "+ xds-helper 0.3-1" in page
    assert "first version" in page
    assert 'value="v2" selected' in page.replace("\n", "").replace("  ", "")


def test_version_current_on_a_date_is_preselected(settings, world, as_user):
    _add_versions(settings, world)
    client = as_user("alice")
    page = client.get("/").get_data(as_text=True)
    import re

    env_id = re.search(r'name="env" value="(\d+)"', page).group(1)
    exp_id = re.search(r'name="exp" value="(\d+)"', page).group(1)
    page = client.get(f"/?env={env_id}&exp={exp_id}&on=2026-02-01").get_data(as_text=True)
    assert "on 2026-02-01: <strong>v1</strong>" in page
    assert 'value="v1" selected' in " ".join(page.split())
    page = client.get(f"/?env={env_id}&exp={exp_id}&on=2025-12-31").get_data(as_text=True)
    assert "no version was current on 2025-12-31" in page
    assert "Choose a date" in client.get(f"/?env={env_id}&exp={exp_id}&on=yesterday").get_data(as_text=True)


def _launch(client, world, experiment=None, version="current"):
    page = client.get("/").get_data(as_text=True)
    return client.post("/launch", data={"environment": world["env"], "version": version,
                                        "experiment": experiment or world["e1"], "csrf_token": csrf_of(page)})


def _wait_running(settings, session_id):
    for _ in range(100):
        with session_scope(settings) as db:
            if db.get(DesktopSession, session_id).state == "running":
                return
        time.sleep(0.05)
    raise AssertionError("the session did not run")


def test_launch_opens_the_desktop_at_once_which_connects_once_running_then_stop(settings, world, as_user):
    alice = as_user("alice")
    # the broker's start is held back: the viewer is served while the session is still starting
    gate = threading.Event()
    world["backend"].ensure_image = lambda node, image: gate.wait(10) and False
    reply = _launch(alice, world)
    assert reply.status_code == 302 and reply.location.endswith("/desktop")
    session_id = int(reply.location.split("/")[2])
    desktop = alice.get(f"/sessions/{session_id}/desktop")
    html = desktop.get_data(as_text=True)
    assert desktop.status_code == 200 and desktop.headers["Cache-Control"] == "no-store"
    assert 'id="starting"' in html and "core/rfb.js" in html and 'rel="modulepreload"' in html
    with session_scope(settings) as db:
        password = db.get(DesktopSession, session_id).vnc_password
    assert password not in html  # the password comes only with a token, once the desktop runs
    connect = f"/sessions/{session_id}/token"
    assert alice.post(connect).status_code == 400  # no CSRF header
    early = alice.post(connect, headers={"X-CSRFToken": csrf_of(html)})
    assert early.status_code == 409 and early.json["state"] in ("pending", "starting")
    assert early.json["final"] is False and "token" not in early.json and "password" not in early.json
    gate.set()
    _wait_running(settings, session_id)
    assert alice.get(f"/sessions/{session_id}/state").json["ready"] is True
    assert alice.get(f"/sessions/{session_id}").location == f"/sessions/{session_id}/desktop"
    ready = alice.post(connect, headers={"X-CSRFToken": csrf_of(html)})
    assert ready.status_code == 200 and ready.json["token"] and ready.json["password"] == password
    assert ready.json["ready"] is True and ready.headers["Cache-Control"] == "no-store"
    listing = alice.get("/sessions").get_data(as_text=True)
    assert f'data-session="{session_id}"' in listing
    stopped = alice.post(f"/sessions/{session_id}/stop", data={"csrf_token": csrf_of(listing)})
    assert stopped.status_code == 302
    with session_scope(settings) as db:
        assert db.get(DesktopSession, session_id).state == "stopped"
    assert world["backend"].running == {}
    ended = alice.post(connect, headers={"X-CSRFToken": csrf_of(html)})
    assert ended.status_code == 409 and ended.json["final"] is True and ended.json["state"] == "stopped"


def test_another_user_cannot_open_see_or_stop_my_session(settings, world, as_user):
    alice, bob = as_user("alice"), as_user("bob")
    session_id = int(_launch(alice, world).location.split("/")[2])
    _wait_running(settings, session_id)
    page = bob.get("/sessions").get_data(as_text=True)
    assert f'data-session="{session_id}"' not in page
    for path in ("", "/progress", "/state", "/desktop"):
        assert bob.get(f"/sessions/{session_id}{path}").status_code == 404
    assert bob.post(f"/sessions/{session_id}/token", headers={"X-CSRFToken": csrf_of(page)}).status_code == 404
    assert bob.post(f"/sessions/{session_id}/stop", data={"csrf_token": csrf_of(page)}).status_code == 404
    with session_scope(settings) as db:
        assert db.get(DesktopSession, session_id).state == "running"
    # administrators see it and may stop it, but do not get its desktop
    root = as_user("root")
    assert root.get(f"/sessions/{session_id}/progress").status_code == 200
    assert root.get(f"/sessions/{session_id}/desktop").status_code == 404


def test_stop_goes_back_only_to_a_local_page(settings, world, as_user):
    alice = as_user("alice")
    for back, expected in (("/\\evil.example/x", "/sessions"), ("//evil.example/", "/sessions"),
                           ("https://evil.example/", "/sessions"), ("/admin/sessions", "/admin/sessions")):
        session_id = int(_launch(alice, world).location.split("/")[2])
        _wait_running(settings, session_id)
        page = alice.get("/sessions").get_data(as_text=True)
        reply = alice.post(f"/sessions/{session_id}/stop", data={"csrf_token": csrf_of(page), "back": back})
        assert reply.status_code == 302 and reply.location == expected, back


def test_a_refused_launch_says_why(world, as_user):
    alice = as_user("alice")
    reply = _launch(alice, world, experiment=world["e2"])  # bob's experiment
    assert reply.status_code == 302 and reply.location == "/"
    page = alice.get("/").get_data(as_text=True)
    assert "Could not start" in page
    assert "Could not start" in (_launch(alice, world, version="v9").status_code == 302 and
                                 alice.get("/").get_data(as_text=True))


def test_admin_pages(settings, world, as_user):
    root, alice = as_user("root"), as_user("alice")
    _launch(alice, world)
    for path in ("/admin/", "/admin/nodes", "/admin/sessions", "/admin/builds", "/admin/packages",
                 "/admin/experiments"):
        assert root.get(path).status_code == 200, path
        assert alice.get(path).status_code == 403, path
    assert world["e1"] in root.get("/admin/experiments").get_data(as_text=True)
    assert "n1" in root.get("/admin/nodes").get_data(as_text=True)
    with session_scope(settings) as db:
        version = db.scalar(select(EnvironmentVersion).where(EnvironmentVersion.version == "v1"))
        version.build_log = "step 1/9 : FROM base\nall good"
        version_id = version.id
    assert "all good" in root.get(f"/admin/builds/{version_id}/log").get_data(as_text=True)
    assert "Administration" not in alice.get("/").get_data(as_text=True)


def test_vendored_assets_are_served(app):
    client = app.test_client()
    assert client.get("/static/vendor/novnc/core/rfb.js").mimetype == "text/javascript"
    assert client.get("/static/vendor/bootstrap/css/bootstrap.min.css").status_code == 200
    assert client.get("/static/vendor/nope/x.js").status_code == 404
    assert client.get("/static/vendor/novnc/../../package.json").status_code == 404
