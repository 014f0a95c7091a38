"""The broker on two real Docker daemons and PostgreSQL: launch, isolate, stop, re-adopt, lose a node."""

from __future__ import annotations

import signal

import docker
import pytest
from sqlalchemy import select

from asci import rfb
from asci.db import session_scope
from broker import service
from broker.backends.base import NodeRef
from broker.backends.docker import DockerBackend
from broker.errors import NotFound
from broker.models import DesktopSession, Node
from broker.reconcile import reconcile
from tests.support import make_world, remove_sessions
from tests.support import user_of as user
from web import create_app

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.postgres, pytest.mark.slow]
MAIN = "unix:///var/run/docker.sock"


@pytest.fixture
def cluster(pg_settings, pushed_image, second_daemon, node2_image, tmp_path, make_broker):
    reference, digest = pushed_image
    settings = pg_settings.replace(broker_instance=f"t{tmp_path.name[-20:].lower().replace('_', '-')}"[:40],
                                   session_start_timeout_s=90)
    nodes = [dict(name="node1", docker_url=MAIN, cpus=4, memory_bytes=8 << 30),
             dict(name="node2", docker_url=second_daemon["url"], cpus=4, memory_bytes=16 << 30)]
    world = make_world(settings, nodes, image=reference, digest=digest)
    broker = make_broker(settings, DockerBackend())
    app = create_app(settings, broker=broker)
    yield settings, world, broker, app.test_client()
    for url in (MAIN, second_daemon["url"]):
        remove_sessions(url, settings.broker_instance, world["names"].values())
    broker.backend.close()


def _auth(world, who):
    return {"Authorization": f"Bearer {world['tokens'][who]}"}


def _launch(client, world, who="alice", **extra):
    reply = client.post("/api/sessions", json={"environment": world["env"], "experiment": world["e1"], "cpus": 1,
                                               "memory": "1g", **extra}, headers=_auth(world, who))
    assert reply.status_code == 201, reply.json
    return reply.json


def test_launch_shows_a_drawn_desktop_isolated_and_stops(cluster, artifacts_dir):
    settings, world, broker, client = cluster
    body = _launch(client, world)
    assert body["node"] == "node2"  # most free memory
    target = broker.vnc_target(body["id"], user(settings, world, "alice"))
    frame = rfb.wait_for_desktop(target.socket, target.password, timeout=60)
    (artifacts_dir / "session.png").write_bytes(frame.to_png())
    with session_scope(settings) as db:
        container_id = db.get(DesktopSession, body["id"]).backend_state["container_id"]
    attrs = broker.backend.client(NodeRef.of(_node(settings, "node2"))).api.inspect_container(container_id)
    config, host_config = attrs["Config"], attrs["HostConfig"]
    assert config["Image"].endswith(body["image_digest"]) and config["User"] == "4242:4242"
    assert config["NetworkDisabled"] is True and attrs["NetworkSettings"]["Networks"] == {}
    assert host_config["NetworkMode"] != "host" and host_config["CapDrop"] == ["ALL"]
    assert not [item for item in config["Env"] if "PASSWORD=" in item]
    assert "NVIDIA_VISIBLE_DEVICES=void" in config["Env"]
    assert host_config["SecurityOpt"] == ["no-new-privileges"] and host_config["Memory"] == 1 << 30
    assert config["Labels"]["asci.session"] == str(body["id"]) and config["Labels"]["asci.version"] == "v1"
    data = [m for m in attrs["Mounts"] if m["Destination"] == "/data"][0]
    assert data["RW"] is False
    # the other user: not listed, 404 on get and stop, no VNC target
    assert client.get("/api/sessions", headers=_auth(world, "bob")).json["sessions"] == []
    assert client.get(f"/api/sessions/{body['id']}", headers=_auth(world, "bob")).status_code == 404
    assert client.delete(f"/api/sessions/{body['id']}", headers=_auth(world, "bob")).status_code == 404
    with pytest.raises(NotFound):
        broker.vnc_target(body["id"], user(settings, world, "bob"))
    listed = client.get("/api/sessions", headers=_auth(world, "alice")).json["sessions"]
    assert [s["id"] for s in listed] == [body["id"]] and listed[0]["state"] == "running"
    stopped = client.delete(f"/api/sessions/{body['id']}", headers=_auth(world, "alice")).json
    assert stopped["state"] == "stopped"
    with pytest.raises(docker.errors.NotFound):
        broker.backend.client(NodeRef.of(_node(settings, "node2"))).containers.get(container_id)


def _node(settings, name):
    with session_scope(settings) as db:
        row = db.scalar(select(Node).where(Node.name == name))
        db.expunge(row)
        return row


def test_bad_request_starts_nothing(cluster):
    settings, world, broker, client = cluster
    reply = client.post("/api/sessions", json={"environment": world["env"], "experiment": world["e2"]},
                        headers=_auth(world, "alice"))
    assert reply.status_code == 403 and "not a member" in reply.json["error"]
    for url in (MAIN, _node(settings, "node2").docker_url):
        assert broker.backend.client(NodeRef("x", url)).containers.list(
            all=True, filters={"label": f"asci.broker={settings.broker_instance}"}) == []


def test_restart_readopts_and_a_killed_daemon_loses_its_sessions(cluster, second_daemon):
    settings, world, broker, client = cluster
    first = _launch(client, world, memory="9g", memory_guarantee="9g")  # only node2 can guarantee it
    second = _launch(client, world)  # now node1 has the most free memory
    assert {first["node"], second["node"]} == {"node1", "node2"}, (first, second)
    # broker restart: forget the container ids, then a fresh broker reconciles from the labels
    with session_scope(settings) as db:
        for row in db.scalars(select(DesktopSession)):
            row.state, row.backend_state = "starting", {}
            row.created_at = row.created_at.replace(year=row.created_at.year - 1)
    restarted = service.Broker(settings, DockerBackend())
    with session_scope(settings) as db:
        assert reconcile(restarted, db)["adopted"] == 2
        assert {r.state for r in db.scalars(select(DesktopSession))} == {"running"}
    # node2's daemon dies: its session is lost, the node is down, new launches go to node1
    on_node2 = first if first["node"] == "node2" else second
    second_daemon["process"].send_signal(signal.SIGTERM)
    second_daemon["process"].wait(timeout=60)
    with session_scope(settings) as db:
        summary = reconcile(restarted, db)
        assert summary["nodes_down"] == 1
        assert db.get(DesktopSession, on_node2["id"]).state == "lost"
        assert _node(settings, "node2").state == "down"
    third = _launch(client, world)
    assert third["node"] == "node1" and third["state"] == "running"
    restarted.backend.close()
