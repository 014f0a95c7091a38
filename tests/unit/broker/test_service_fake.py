"""The service and API with a fake backend: authorisation, bad requests, culling, reconciliation, import."""

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from asci.db import session_scope, utcnow
from asci.rfb import vncpasswd_file
from broker import LaunchRequest, service
from broker.cull import cull
from broker.errors import ImportFailed, NotFound
from broker.experiments_import import import_file
from broker.models import DesktopSession, Experiment, Node
from broker.reconcile import reconcile
from tests.support import always_ready, make_world
from tests.support import user_of as user
from web import create_app

NODES = [dict(name="n1", docker_url="unix:///fake1.sock", cpus=16,
              memory_bytes=64 << 30, max_sessions=10, nvidia_smi="t4x1.csv")]


@pytest.fixture
def env(settings, make_broker):
    world = make_world(settings, NODES)
    broker = make_broker(settings)
    return settings, world, broker.backend, broker, create_app(settings, broker=broker).test_client()


def _auth(world, who):
    return {"Authorization": f"Bearer {world['tokens'][who]}"}


def test_launch_list_get_stop_through_the_api(env):
    settings, world, backend, broker, client = env
    reply = client.post("/api/sessions", json={"environment": world["env"], "experiment": world["e1"]},
                        headers=_auth(world, "alice"))
    assert reply.status_code == 201, reply.json
    body = reply.json
    assert body["state"] == "running" and body["version"] == "v1" and body["node"] == "n1"
    assert not {"vnc_password", "vnc_view_password", "vnc_socket"} & set(body)
    [params] = backend.created.values()
    assert params["labels"]["asci.user"] == world["names"]["alice"] and params["user"] == "4242:4242"
    assert params["network_disabled"] is True and "VNC_PASSWORD" not in params["environment"]
    assert client.get("/api/sessions", headers=_auth(world, "alice")).json["sessions"][0]["id"] == body["id"]
    assert client.get(f"/api/sessions/{body['id']}", headers=_auth(world, "alice")).status_code == 200
    target = broker.vnc_target(body["id"], user(settings, world, "alice"))
    folder = settings.run_dir / f"{settings.broker_instance}-s{body['id']}"
    assert target.socket == str(folder / "vnc" / "vnc.sock") and len(target.password) == 8
    assert len(target.view_password) == 8 and target.view_password != target.password
    assert (folder / "secret" / "passwd").read_bytes() == vncpasswd_file(target.password, target.view_password)
    # bob: 404 everywhere, nothing stopped; admin sees everything
    assert client.get(f"/api/sessions/{body['id']}", headers=_auth(world, "bob")).status_code == 404
    assert client.delete(f"/api/sessions/{body['id']}", headers=_auth(world, "bob")).status_code == 404
    assert client.get("/api/sessions", headers=_auth(world, "bob")).json["sessions"] == []
    assert client.get("/api/sessions?all=1", headers=_auth(world, "bob")).status_code == 403
    with pytest.raises(NotFound):
        broker.vnc_target(body["id"], user(settings, world, "bob"))
    assert len(client.get("/api/sessions?all=1", headers=_auth(world, "root")).json["sessions"]) == 1
    assert client.get("/api/nodes", headers=_auth(world, "alice")).status_code == 403
    assert client.get("/api/nodes", headers=_auth(world, "root")).json["nodes"][0]["used"]["sessions"] == 1
    assert client.get("/api/health", headers=_auth(world, "root")).status_code == 200
    assert client.get("/metrics").status_code == 401  # metrics are not for everyone
    assert client.get("/metrics", headers=_auth(world, "alice")).status_code == 403
    assert b"asci_sessions{state=\"running\"} 1.0" in client.get("/metrics", headers=_auth(world, "root")).data
    assert client.get("/api/openapi.json").json["openapi"].startswith("3.")
    stopped = client.delete(f"/api/sessions/{body['id']}", headers=_auth(world, "alice"))
    assert stopped.json["state"] == "stopped" and backend.running == {}
    assert not folder.exists(), "an ended session's socket and password folder must go"
    assert client.get("/api/sessions").status_code == 401


def test_login_session_authenticates(env):
    settings, world, backend, broker, client = env
    with client.session_transaction() as flask_session:
        flask_session["user_id"] = world["ids"]["alice"]
    assert client.get("/api/sessions").status_code == 401  # a cookie without the account's session epoch
    with client.session_transaction() as flask_session:
        flask_session.update(user_id=world["ids"]["alice"], epoch=0)
    assert client.get("/api/sessions").status_code == 200


@pytest.mark.parametrize("payload, status, message", [
    ({"environment": "nope", "experiment": "E1"}, 404, "unknown environment"),
    ({"environment": "{env}", "version": "v9", "experiment": "{e1}"}, 404, "no version 'v9'"),
    ({"environment": "{env}", "version": "v0", "experiment": "{e1}"}, 400, "cannot be launched"),
    ({"environment": "{env}", "experiment": "{e2}"}, 403, "not a member"),
    ({"environment": "{env}", "experiment": "{e1}", "cpus": 5000}, 400, "cpus"),
    ({"environment": "{env}", "experiment": "{e1}", "memory": "900t"}, 400, "memory"),
    ({"environment": "{env}", "experiment": "{e1}", "gpu": "yes"}, 400, "gpu"),
    ({"environment": "{env}", "experiment": "{e1}", "colour": "red"}, 400, "unknown field"),
    ("not json", 400, "expected a JSON object"),
    ([1, 2], 400, "expected a JSON object"),
])
def test_bad_requests_get_a_clear_4xx_and_start_nothing(env, payload, status, message):
    settings, world, backend, broker, client = env
    if isinstance(payload, dict):
        payload = {k: v.format(**world) if isinstance(v, str) else v for k, v in payload.items()}
        reply = client.post("/api/sessions", json=payload, headers=_auth(world, "alice"))
    else:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        reply = client.post("/api/sessions", data=data, content_type="application/json", headers=_auth(world, "alice"))
    assert reply.status_code == status and message in reply.json["error"]
    assert backend.created == {}
    with session_scope(settings) as db:
        assert db.scalar(select(func.count(DesktopSession.id))) == 0


def test_quota_gpu_capacity_and_failed_node(env):
    settings, world, backend, broker, client = env
    alice = user(settings, world, "alice")
    with session_scope(settings) as db:
        first = broker.launch(db, alice, world["env"], "current", world["e1"], gpu=True)
        assert first.gpu_uuid == "GPU-a1b2c3d4-0000-1111-2222-333344445555"
        reply = client.post("/api/sessions", json={"environment": world["env"], "experiment": world["e1"],
                                                   "gpu": True}, headers=_auth(world, "alice"))
        assert reply.status_code == 503 and "free GPU" in reply.json["error"]
        broker.launch(db, alice, world["env"], "current", world["e1"])
        broker.launch(db, alice, world["env"], "current", world["e1"])
        reply = client.post("/api/sessions", json={"environment": world["env"], "experiment": world["e1"]},
                            headers=_auth(world, "alice"))
        assert reply.status_code == 429 and "at most 3" in reply.json["error"]
        backend.down.add("n1")
        summary = reconcile(broker, db)
        assert summary["nodes_down"] == 1
        assert db.get(Node, 1).state == "down"
        assert {s.state for s in db.scalars(select(DesktopSession).where(DesktopSession.gpu_uuid != ""))} == {"lost"}


def test_idle_sessions_are_warned_then_stopped(env):
    settings, world, backend, broker, client = env
    with session_scope(settings) as db:
        session = broker.launch(db, user(settings, world, "alice"), world["env"], "v1", world["e1"])
        started = session.started_at
        warn_time = started + dt.timedelta(seconds=settings.session_idle_timeout_s - 60)
        assert cull(broker, db, now=warn_time) == {"warned": 1, "culled": 0, "expired": 0, "disabled": 0}
        assert session.message.startswith("idle:")
        assert broker.touch(session.id) is True  # a VNC client connected (websockify)
        db.refresh(session)
        assert session.warned_at is None and session.message == ""
        late = session.last_activity + dt.timedelta(seconds=settings.session_idle_timeout_s + 1)
        assert cull(broker, db, now=late)["culled"] == 1
        assert session.state == "stopped" and "no VNC client" in session.message
        assert backend.running == {}
        assert broker.touch(session.id) is False  # websockify's keep-alive stops here


def test_reconcile_readopts_after_restart_and_marks_vanished_lost(env):
    settings, world, backend, broker, client = env
    with session_scope(settings) as db:
        alice = user(settings, world, "alice")
        a = broker.launch(db, alice, world["env"], "v1", world["e1"])
        b = broker.launch(db, alice, world["env"], "v1", world["e1"])
        # a crash between container start and recording it, and a container removed behind our back
        started_state = dict(a.backend_state)
        a.state, a.backend_state, a.created_at = "starting", {}, utcnow() - dt.timedelta(hours=1)
        db.commit()
        backend.running.pop(b.backend_state["fake_id"])
    restarted = service.Broker(settings, backend, ready=always_ready)
    with session_scope(settings) as db:
        assert reconcile(restarted, db)["adopted"] == 1
        a, b = db.get(DesktopSession, a.id), db.get(DesktopSession, b.id)
        assert a.state == "running" and a.backend_state == started_state  # the backend's own state, re-adopted
        assert b.state == "lost" and "vanished" in b.message


def test_experiment_import_is_idempotent_and_all_or_nothing(settings, tmp_path):
    settings = settings.replace(experiment_data_roots=(Path("/data"),))
    good = tmp_path / "office.csv"
    good.write_text("code,title,data_path,start,end,members\n"
                    "MX-1,Lysozyme,/data/mx1,2026-11-01,2026-11-03,carol dave\n"
                    "SAXS-2,Micelles,/data/saxs2,2026-11-04,2026-11-05,carol\n")
    assert import_file(settings, good) == {"experiments_created": 2, "experiments_updated": 0, "users_created": 2,
                                           "memberships_added": 3, "memberships_pending": 0}
    assert import_file(settings, good)["memberships_added"] == 0
    bad = tmp_path / "office.json"
    bad.write_text(json.dumps([{"code": "NEW-1", "members": ["erin"]},
                               {"code": "NEW-2", "start": "2026-13-40", "members": ["frank"]}]))
    with pytest.raises(ImportFailed, match=r"row 2 \(NEW-2\): start"):
        import_file(settings, bad)
    with session_scope(settings) as db:
        assert {e.code for e in db.scalars(select(Experiment))} == {"MX-1", "SAXS-2"}
        mx = db.scalar(select(Experiment).where(Experiment.code == "MX-1"))
        assert sorted(m.user.username for m in mx.members) == ["carol", "dave"]
        assert mx.members[0].user.password_hash is None


def test_a_background_launch_names_the_new_session_before_its_container_starts(env):
    settings, world, backend, broker, client = env
    with session_scope(settings) as db:
        launched = broker.launch_in_background(db, db.merge(user(settings, world, "alice")),
                                               LaunchRequest(world["env"], "current", world["e1"]))
        row = db.get(DesktopSession, launched)
        assert row.state in ("pending", "starting", "running") and row.user_id == world["ids"]["alice"]
    broker.close()
    with session_scope(settings) as db:
        assert db.get(DesktopSession, launched).state == "running" and len(backend.created) == 1


@pytest.mark.parametrize("data_path", ["data/mx", "/data/../var/run", "/", "/var", "/var/run/docker.sock",
                                       "/etc", "/data/./x", "//etc", "/proc/1/root", "/run/docker.sock"])
def test_experiment_import_refuses_unsafe_data_paths(settings, tmp_path, data_path):
    settings = settings.replace(experiment_data_roots=(Path("/data"),))
    bad = tmp_path / "office.json"
    bad.write_text(json.dumps([{"code": "SAFE-1", "data_path": "/data/safe1", "members": ["gina"]},
                               {"code": "EVIL-1", "data_path": data_path, "members": ["gina"]}]))
    with pytest.raises(ImportFailed, match=r"row 2 \(EVIL-1\): data_path"):
        import_file(settings, bad)
    with session_scope(settings) as db:
        assert db.scalar(select(func.count(Experiment.id)).where(Experiment.code.in_(["SAFE-1", "EVIL-1"]))) == 0


def test_launch_refuses_an_experiment_whose_stored_data_path_is_unsafe(env):
    settings, world, backend, broker, client = env
    with session_scope(settings) as db:
        db.scalar(select(Experiment).where(Experiment.code == world["e1"])).data_path = "/var/run/docker.sock"
    before = _count_sessions(settings)
    reply = client.post("/api/sessions", json={"environment": world["env"], "experiment": world["e1"]},
                        headers=_auth(world, "alice"))
    assert reply.status_code == 403 and "docker.sock" in reply.json["error"]
    assert backend.created == {} and _count_sessions(settings) == before


def _count_sessions(settings):
    with session_scope(settings) as db:
        return db.scalar(select(func.count(DesktopSession.id)))


@pytest.mark.parametrize("field", ["memory", "cpus"])
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_resources_are_a_bad_request(env, field, literal):
    settings, world, backend, broker, client = env
    body = f'{{"environment": "{world["env"]}", "experiment": "{world["e1"]}", "{field}": {literal}}}'
    reply = client.post("/api/sessions", data=body, content_type="application/json", headers=_auth(world, "alice"))
    assert reply.status_code == 400 and field in reply.json["error"]
    assert backend.created == {}
