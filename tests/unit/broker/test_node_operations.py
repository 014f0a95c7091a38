"""Node operations with a fake backend: drain and resume (placement), remove (refused while sessions run,
--force stops them), update (rotation), the admin nodes page, and a home under ``home_root``."""

from __future__ import annotations

import os
import stat

import pytest
from sqlalchemy import select

from asci.db import session_scope
from broker.errors import Conflict, NodeUnreachable, NotFound
from broker.models import DesktopSession, Node
from broker.nodes import remove_node, update_node
from broker.views import node_views
from tests.support import make_world
from web import create_app

NODES = [dict(name="n1", docker_url="unix:///fake1.sock", cpus=16, memory_bytes=64 << 30, max_sessions=10),
         dict(name="n2", docker_url="unix:///fake2.sock", cpus=16, memory_bytes=64 << 30, max_sessions=10)]


@pytest.fixture
def env(settings, make_broker):
    world = make_world(settings, NODES)
    broker = make_broker(settings)
    return settings, world, broker, create_app(settings, broker=broker).test_client()


def _launch(client, world, who="alice"):
    experiment = world["e2"] if who == "bob" else world["e1"]
    return client.post("/api/sessions", json={"environment": world["env"], "experiment": experiment},
                       headers={"Authorization": f"Bearer {world['tokens'][who]}"})


def _set(settings, name, **values):
    with session_scope(settings) as db:
        node = db.scalar(select(Node).where(Node.name == name))
        for key, value in values.items():
            setattr(node, key, value)


def test_a_drained_node_takes_no_new_sessions_and_keeps_its_running_ones(env):
    settings, world, _broker, client = env
    _set(settings, "n2", drained=True)
    first = _launch(client, world).json
    assert first["node"] == "n1"
    _set(settings, "n1", drained=True)
    _set(settings, "n2", drained=False)
    second = _launch(client, world, "bob").json
    assert second["node"] == "n2"
    with session_scope(settings) as db:
        assert db.get(DesktopSession, first["id"]).state == "running"  # drained, not stopped
    _set(settings, "n2", drained=True)
    reply = client.post("/api/sessions", json={"environment": world["env"], "experiment": world["e1"]},
                        headers={"Authorization": f"Bearer {world['tokens']['alice']}"})
    assert reply.status_code == 503, reply.json  # every node drained: no capacity now
    with session_scope(settings) as db:
        views = {row["name"]: row for row in node_views(db)}
    assert views["n1"]["drained"] is True and views["n1"]["agent"] == ""


def test_remove_is_refused_while_sessions_run_and_force_stops_them(env):
    settings, world, broker, client = env
    session = _launch(client, world).json
    with session_scope(settings) as db:
        with pytest.raises(Conflict, match="1 active sessions"):
            remove_node(settings, db, session["node"])
    with session_scope(settings) as db:
        assert remove_node(settings, db, session["node"], force=True, broker=broker) == 1
    with session_scope(settings) as db:
        row = db.get(DesktopSession, session["id"])
        assert row.state == "stopped" and "removed by an administrator" in row.message and row.node_id is None
        assert db.scalar(select(Node).where(Node.name == session["node"])) is None
        with pytest.raises(NotFound):
            remove_node(settings, db, "nope")
    assert not broker.backend.running  # its container was stopped first


def test_update_rotates_the_files_only_when_the_engine_answers_with_them(env):
    settings, _world, broker, _client = env
    with session_scope(settings) as db:
        row = update_node(settings, db, "n1", tls_ca="/etc/new-ca.pem", tls_cert="/etc/new.pem", tls_key="/etc/k.pem",
                          backend=broker.backend)
        assert (row.tls_ca, row.tls_cert, row.tls_key) == ("/etc/new-ca.pem", "/etc/new.pem", "/etc/k.pem")
    broker.backend.down.add("n1")
    with session_scope(settings) as db:
        with pytest.raises(NodeUnreachable):
            update_node(settings, db, "n1", tls_cert="/etc/newer.pem", backend=broker.backend)
    with session_scope(settings) as db:
        assert db.scalar(select(Node).where(Node.name == "n1")).tls_cert == "/etc/new.pem"  # unchanged


def test_the_admin_nodes_page_shows_drained_nodes_and_agents(env):
    settings, world, _broker, client = env
    _set(settings, "n1", drained=True, agent="127.0.0.9:7443", agent_state="down")
    from tests.support import login

    login(client, world["names"]["root"])
    page = client.get("/admin/nodes")
    assert page.status_code == 200, page.status_code
    text = page.get_data(as_text=True)
    assert "node-drained" in text and "127.0.0.9:7443" in text and ">down</span>" in text
    assert "local" in text  # n2 has no agent


def test_a_home_under_the_home_root_is_made_for_the_user_and_bound(settings, make_broker, tmp_path):
    home_root = tmp_path / "homes"
    home_root.mkdir()
    settings = settings.replace(home_root=str(home_root))
    world = make_world(settings, NODES)
    broker = make_broker(settings)
    reply = _launch(create_app(settings, broker=broker).test_client(), world)
    assert reply.status_code == 201, reply.json
    home = home_root / world["names"]["alice"]
    info = os.lstat(home)
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (4242, 0o700)
    [params] = broker.backend.created.values()
    [mount] = [m for m in params["mounts"] if m["Target"] == f"/home/{world['names']['alice']}"]
    assert (mount["Type"], mount["Source"]) == ("bind", str(home))
