"""The administration page's pictures: node usage history (sampled, pruned), launch latency per hour, the
build timeline, and live thumbnails grabbed from a desktop's VNC server (owner and administrators only)."""

from __future__ import annotations

import datetime as dt
import struct
import zlib

import pytest

import broker
from asci.db import session_scope, utcnow
from asci.rfb import Framebuffer
from broker import usage_history
from broker.models import DesktopSession, NodeUsageSample, SessionState
from builder.models import EnvironmentVersion
from ci import build_timeline
from ci.models import BuildJob, JobState
from tests.fake_vnc import fake_desktop, pattern
from tests.support import user_of as user


def _png(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and the raw RGB rows (filter bytes removed) of one of our PNGs."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack("!II", data[16:24])
    start = data.index(b"IDAT") + 4
    length = struct.unpack("!I", data[start - 8:start - 4])[0]
    raw = zlib.decompress(data[start:start + length])
    rows = b"".join(raw[row * (width * 3 + 1) + 1:(row + 1) * (width * 3 + 1)] for row in range(height))
    return width, height, rows


def test_a_framebuffer_shrinks_to_a_thumbnail():
    frame = Framebuffer(1281, 801, "x", pattern(1281, 801))
    small = frame.scaled(320)
    assert (small.width, small.height) == (257, 161)  # every 5th pixel of every 5th row
    assert len(small.pixels) == 257 * 161 * 4
    assert small.pixels[4 * 100:4 * 101] == frame.pixels[4 * 500:4 * 501]
    assert small.pixels[(80 * 257 + 128) * 4] == 255  # the blue square is still in the middle
    width, height, rows = _png(small.to_png())
    assert (width, height) == (257, 161) and rows[2::3][:257] == small.pixels[0:257 * 4:4]
    assert frame.scaled(5000) is frame


def test_node_usage_is_sampled_once_per_interval_and_pruned(settings, world):
    now = utcnow()
    with session_scope(settings) as db:
        db.add(NodeUsageSample(at=now - dt.timedelta(days=settings.usage_history_days + 1), node="old"))
        db.commit()
        assert usage_history.sample(settings, db, now) == 1  # one node: n1
        assert usage_history.sample(settings, db, now + dt.timedelta(seconds=10)) == 0  # not due yet
        assert usage_history.sample(settings, db, now + dt.timedelta(seconds=settings.usage_sample_interval_s)) == 1
        history = usage_history.node_history(db, now - dt.timedelta(days=365))
    assert list(history) == ["n1"]  # the old sample was pruned
    assert history["n1"]["schedulable_cpus"] == [16.0, 16.0] and history["n1"]["guaranteed_cpus"] == [0.0, 0.0]
    assert history["n1"]["schedulable_memory_bytes"] == [64 << 30] * 2


def test_reconciliation_records_usage_with_the_guarantees_of_running_desktops(settings, world):
    with session_scope(settings) as db:
        world["broker"].launch(db, db.merge(user(settings, world, "alice")), world["env"], "current", world["e1"],
                       cpu_guarantee=1.5)
    broker.reconcile_loop(world["broker"], 0, passes=1)
    with session_scope(settings) as db:
        history = usage_history.node_history(db, utcnow() - dt.timedelta(hours=1))
    assert history["n1"]["guaranteed_cpus"] == [1.5] and history["n1"]["sessions"] == [1]


def test_launches_per_hour_and_the_build_timeline(settings, world):
    clock = utcnow()
    now = clock.replace(minute=30, second=0, microsecond=0)  # half past an hour, not in the future
    now -= dt.timedelta(hours=1) if now > clock else dt.timedelta(0)
    with session_scope(settings) as db:
        version = db.query(EnvironmentVersion).filter_by(version="v1").one().id
        for minutes_ago, seconds, failed in ((65, 2.0, False), (70, 4.0, False), (75, 30.0, True), (5, 8.0, False)):
            created = now - dt.timedelta(minutes=minutes_ago)
            later = created + dt.timedelta(seconds=seconds)
            db.add(DesktopSession(user_id=world["ids"]["alice"], experiment_id=1, environment_version_id=version,
                                  state=SessionState.FAILED if failed else SessionState.STOPPED, created_at=created,
                                  started_at=None if failed else later, stopped_at=later))
        db.add(BuildJob(environment="a", state=JobState.SUCCEEDED, started_at=now - dt.timedelta(hours=2),
                        finished_at=now - dt.timedelta(hours=1)))
        db.add(BuildJob(environment="b", state=JobState.RUNNING, started_at=now - dt.timedelta(minutes=3)))
        db.add(BuildJob(environment="c", state=JobState.FAILED, started_at=now - dt.timedelta(days=9),
                        finished_at=now - dt.timedelta(days=9)))
        db.commit()
        hours = usage_history.launch_hours(db, 3, now)
        timeline = build_timeline(db, now - dt.timedelta(days=7))
    assert [hour["launches"] for hour in hours] == [0, 3, 1]
    previous = hours[1]
    assert previous["failures"] == 1 and previous["p50"] == 2.0 and previous["p95"] == 4.0
    assert hours[2]["p95"] == 8.0 and hours[0]["p50"] is None
    assert [(bar["environment"], bar["state"]) for bar in timeline] == [("a", "succeeded"), ("b", "running")]
    assert timeline[0]["end"] - timeline[0]["start"] == pytest.approx(3600)
    assert timeline[1]["end"] >= now.timestamp()


def test_operations_json_is_for_administrators(as_user, world):
    assert as_user("alice").get("/admin/operations.json").status_code == 403
    reply = as_user("root").get("/admin/operations.json?launch_hours=6")
    assert reply.status_code == 200
    body = reply.json
    assert len(body["launches"]) == 6 and body["builds"] == [] and body["running"] == []
    assert as_user("root").get("/admin/operations.json?node_hours=0").status_code == 400
    assert as_user("root").get("/admin/operations.json?node_hours=x").status_code == 400


@pytest.fixture
def alices_desktop(settings, world):
    with session_scope(settings) as db:
        row = world["broker"].launch(db, db.merge(user(settings, world, "alice")), world["env"], "current",
                             world["e1"])
        info = {"id": row.id, "socket": row.vnc_socket, "password": row.vnc_password,
                "view_password": row.vnc_view_password}
    with fake_desktop(info["socket"], 4242, (info["password"], info["view_password"])) as log:
        yield info | {"log": log}


def test_a_running_desktop_has_a_live_thumbnail_for_its_owner_and_administrators(as_user, alices_desktop):
    url = f"/sessions/{alices_desktop['id']}/thumbnail.png"
    reply = as_user("alice").get(url)
    assert reply.status_code == 200 and reply.mimetype == "image/png"
    assert "no-store" in reply.headers["Cache-Control"]
    width, height, rows = _png(reply.data)
    assert (width, height) == (320, 200)
    assert alices_desktop["log"] == [alices_desktop["view_password"]]  # grabbed with the view-only password
    assert as_user("root").get(url).status_code == 200
    assert len(alices_desktop["log"]) == 1  # within thumbnail_max_age_s: the same picture, no second grab
    assert as_user("bob").get(url).status_code == 404
    assert as_user("alice").get("/sessions/999999/thumbnail.png").status_code == 404
    page = as_user("alice").get("/sessions").get_data(as_text=True)
    assert f'data-src="{url}"' in page and "js/thumbnails.js" in page
    admin = as_user("root").get("/admin/").get_data(as_text=True)
    assert "chart.umd.js" in admin and 'id="chart-builds"' in admin


def test_a_stopped_desktop_has_no_thumbnail(settings, as_user, world, alices_desktop):
    with session_scope(settings) as db:
        world["broker"].stop(db, alices_desktop["id"], db.merge(user(settings, world, "alice")))
    assert as_user("alice").get(f"/sessions/{alices_desktop['id']}/thumbnail.png").status_code == 404
