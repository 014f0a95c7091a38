"""Nodes on other machines (``tests/farnodes.py``: own mount and pid namespaces, own engine and agent on
127.0.0.2 / 127.0.0.3, TLS only, the platform's data hidden from them), reached only over TCP: a desktop
launched there is drawn through the agent's relay and leaves nothing in the platform's run folder; the
smoke gate's probe runs there; relay tickets and certificates are enforced; a silent agent takes its
node down (sessions lost) and back up; a home written on one far node is there on the other; a node
lacking the experiment's data folder fails the launch at once."""

from __future__ import annotations

import os
import threading
import time

import pytest
from sqlalchemy import select

from asci import accounts, rfb
from asci.db import session_scope
from broker import certs, probe_desktop, register_node, shares, tickets
from broker.agent_client import AgentNode, parse_socket_uri
from broker.backends.base import NodeRef
from broker.backends.docker import DockerBackend
from broker.errors import BackendError, NodeUnreachable
from broker.loops import reconcile_loop
from broker.models import DesktopSession, Experiment, Node
from broker.node_paths import open_viewer
from tests.support import add_members, make_world
from web import create_app
from web.vnc_tokens import make_token, resolve

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.postgres, pytest.mark.slow]
INTERVAL = 2.0


@pytest.fixture
def far(pg_settings, far_cluster, desktop_image, tmp_path, make_broker):
    """Both far nodes registered with their agents; the platform's settings share the cluster's
    experiment data and home root; a world whose experiments' data lie on the shared storage."""
    settings = pg_settings.replace(
        broker_instance=f"far{tmp_path.name[-10:].lower().replace('_', '-')}"[:40], session_start_timeout_s=90,
        reconcile_interval_s=INTERVAL,
        experiment_data_roots=(far_cluster.experiments, pg_settings.data_dir / "experiments"),
        home_root=str(far_cluster.homes), placement_policy="pack")
    world = make_world(settings, [], image=desktop_image.split("@")[0] + ":v1", digest=desktop_image.split("@")[1])
    broker = make_broker(settings, DockerBackend())
    with session_scope(settings) as db:
        for node in far_cluster.nodes.values():
            register_node(settings, db, node.name, node.docker_url, agent=node.agent, **node.tls())
    yield settings, world, broker, create_app(settings, broker=broker).test_client()
    for node in far_cluster.nodes.values():
        node.start_agent()
        client = node.client()
        for container in client.containers.list(all=True, filters={"label": f"asci.broker={settings.broker_instance}"}):
            container.remove(force=True)
        client.close()
    broker.backend.close()


def _auth(world, who="alice"):
    return {"Authorization": f"Bearer {world['tokens'][who]}"}


def _launch(client, world, who="alice", experiment=None):
    reply = client.post("/api/sessions", json={"environment": world["env"], "experiment": experiment or world["e1"],
                                               "cpus": 1, "memory": "1g"}, headers=_auth(world, who))
    return reply


def _row(settings, session_id) -> DesktopSession:
    with session_scope(settings) as db:
        row = db.get(DesktopSession, session_id)
        db.expunge(row)
        return row


def _node(settings, name) -> Node:
    with session_scope(settings) as db:
        row = db.scalar(select(Node).where(Node.name == name))
        db.expunge(row)
        return row


def _wait_for(condition, timeout: float, step: float = 0.05) -> float:
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(step)
    return time.monotonic() - began


def test_a_desktop_on_a_far_node_is_drawn_through_its_agent(far, far_cluster, artifacts_dir):
    settings, world, broker, client = far
    reply = _launch(client, world)
    assert reply.status_code == 201, reply.json
    session = reply.json
    assert session["node"] == "far1" and session["state"] == "running"
    row = _row(settings, session["id"])
    node, key = parse_socket_uri(row.vnc_socket)
    assert node == "far1" and key == f"{settings.broker_instance}-s{session['id']}"
    # nothing of the session on the platform's side: its folder is on the node
    assert not (settings.run_dir / key).exists()
    far1 = far_cluster.nodes["far1"]
    assert (far1.run_dir / key / "vnc").stat().st_uid == 0  # locked by the node's agent
    assert key in far1.agent_node().held()
    # the container runs on the far node's engine, with the home bound from the shared home root
    attrs = far1.client().api.inspect_container(row.backend_state["container_id"])
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    home = mounts[f"/home/{world['names']['alice']}"]
    assert home["Type"] == "bind" and home["Source"] == str(far_cluster.homes / world["names"]["alice"])
    assert mounts["/run/asci/vnc"]["Source"] == str(far1.run_dir / key / "vnc")
    # websockify's plugin opens a one-connection bridge to the agent's relay; the desktop is drawn through it
    kind, path = resolve(settings, broker, make_token(settings, world["ids"]["alice"], session["id"]))
    assert kind == "unix_socket" and path.startswith(str(settings.run_dir / "bridges"))
    frame = rfb.wait_for_desktop(path, row.vnc_password, timeout=60)
    assert frame.is_drawn() and frame.width >= 640
    (artifacts_dir / "desktop-on-a-far-node.png").write_bytes(frame.to_png())
    assert not os.path.exists(path)  # the bridge served its one connection
    # a share guest views it through the same relay, as viewer share:<id>, with the view-only password
    [guest] = add_members(settings, world, 1)
    with session_scope(settings) as db:
        owner = db.get(accounts.User, world["ids"]["alice"])
        share_id = shares.share(db, session["id"], owner, world["names"][guest], "view").id
    kind, path = resolve(settings, broker, make_token(settings, world["ids"][guest], session["id"], share_id))
    assert rfb.wait_for_desktop(path, row.vnc_view_password, timeout=60).is_drawn()
    # sharing gave the desktop a new full password on the node: the one held before opens nothing now
    rotated = _row(settings, session["id"]).vnc_password
    assert rotated != row.vnc_password
    kind, path = resolve(settings, broker, make_token(settings, world["ids"]["alice"], session["id"]))
    with pytest.raises(rfb.RFBError, match="authentication failed"):
        rfb.capture(path, row.vnc_password)
    kind, path = resolve(settings, broker, make_token(settings, world["ids"]["alice"], session["id"]))
    assert rfb.capture(path, rotated).width >= 640
    assert "relay opened" in (far1.root / "agent.log").read_text() and f"share:{share_id}" in (
        far1.root / "agent.log").read_text()
    # stopping removes the folder on the node
    assert client.delete(f"/api/sessions/{session['id']}", headers=_auth(world)).json["state"] == "stopped"
    assert key not in far1.agent_node().held()


def test_the_smoke_gate_probe_runs_on_a_far_node(far, far_cluster, desktop_image):
    settings, _world, _broker, _client = far
    with probe_desktop(settings, desktop_image, "far") as probe:
        assert probe.node.name == "far1" and probe.socket.startswith(str(settings.run_dir / "bridges"))
        frame = rfb.wait_for_desktop(probe.socket, probe.password, timeout=60)
        assert frame.is_drawn()
        assert probe.run("id -u")[1].strip() == "65000"
        folder = [name for name in far_cluster.nodes["far1"].agent_node().held() if name.startswith("probe-")]
        assert len(folder) == 1
    assert not [name for name in far_cluster.nodes["far1"].agent_node().held() if name.startswith("probe-")]


def test_tickets_and_certificates_are_enforced_on_a_far_node(far, far_cluster, tmp_path):
    settings, world, _broker, client = far
    session = _launch(client, world).json
    row = _row(settings, session["id"])
    _node_name, key = parse_socket_uri(row.vnc_socket)
    far1, far2 = far_cluster.nodes["far1"].agent_node(), far_cluster.nodes["far2"].agent_node()
    platform_key = tickets.load_private_key(far_cluster.pki / "key.pem")
    # a valid ticket opens the relay once
    ticket = far1.ticket(key, "owner")
    with far1.open_stream(key, ticket=ticket) as stream:
        assert stream.recv(12).startswith(b"RFB ")
    with pytest.raises(BackendError, match="already used"):
        far1.open_stream(key, ticket=ticket)
    with pytest.raises(BackendError, match="expired"):
        far1.open_stream(key, ticket=tickets.mint(platform_key, key, "far1", "owner", ttl_s=1, now=time.time() - 5))
    rogue = tmp_path / "rogue"
    certs.init(rogue, name="rogue")
    with pytest.raises(BackendError, match="forged"):
        far1.open_stream(key, ticket=tickets.mint(tickets.load_private_key(rogue / "key.pem"), key, "far1", "owner"))
    with pytest.raises(BackendError, match="for node 'far1'"):
        far2.open_stream(key, ticket=far1.ticket(key))  # far1's ticket at far2
    # a client without a certificate of the facility CA gets nothing from the agent or the engine
    outsider = AgentNode("far1", far1.address, str(far_cluster.pki / "ca.pem"), str(rogue / "cert.pem"),
                         str(rogue / "key.pem"), timeout=5)
    with pytest.raises(NodeUnreachable):
        outsider.hello()
    with pytest.raises(NodeUnreachable, match="TLS connection failed"):
        DockerBackend(timeout=5).ping(NodeRef("far1", far_cluster.nodes["far1"].docker_url,
                                              str(far_cluster.pki / "ca.pem"), str(rogue / "cert.pem"),
                                              str(rogue / "key.pem")))


def test_a_silent_agent_takes_its_node_down_and_back_up(far, far_cluster):
    settings, world, broker, client = far
    session = _launch(client, world).json
    assert session["node"] == "far1"
    far1 = far_cluster.nodes["far1"]
    stop = threading.Event()
    loop = threading.Thread(target=reconcile_loop, args=(broker, INTERVAL, stop), daemon=True)
    loop.start()
    try:
        _wait_for(lambda: _node(settings, "far1").agent_state == "up", timeout=INTERVAL + 5)
        far1.stop_agent()
        down_after = _wait_for(lambda: _node(settings, "far1").state == "down", timeout=INTERVAL + 5)
        print(f"far1 marked down {down_after:.2f} s after its agent was killed (interval {INTERVAL} s)")
        assert down_after <= INTERVAL + 1.5
        assert _node(settings, "far1").agent_state == "down" and "agent" in _node(settings, "far1").last_error
        row = _row(settings, session["id"])
        assert row.state == "lost" and "stopped answering" in row.message
        far1.start_agent()
        up_after = _wait_for(lambda: _node(settings, "far1").state == "up", timeout=INTERVAL + 5)
        print(f"far1 up again {up_after:.2f} s after its agent answered")
        assert up_after <= INTERVAL + 1.5 and _node(settings, "far1").agent_state == "up"
        # the lost session's container and folder are cleaned away on the node
        _wait_for(lambda: not far1.client().containers.list(
            all=True, filters={"label": f"asci.broker={settings.broker_instance}"}), timeout=INTERVAL * 3)
        _wait_for(lambda: not [k for k in far1.agent_node().held() if k.startswith(settings.broker_instance)],
                  timeout=INTERVAL * 3)
    finally:
        stop.set()
        loop.join(timeout=30)


def test_a_home_written_on_one_far_node_is_there_on_the_other(far, far_cluster):
    settings, world, broker, client = far
    first = _launch(client, world).json
    assert first["node"] == "far1"
    ref1 = NodeRef.of(_node(settings, "far1"))
    user = world["names"]["alice"]
    code, output = broker.backend.exec(ref1, _row(settings, first["id"]).backend_state,
                                       ["/bin/sh", "-c", f"echo written-on-far1 > /home/{user}/note; id -u"],
                                       "4242:4242", {})
    assert code == 0, output
    home = far_cluster.homes / user
    assert (home.stat().st_uid, home.stat().st_mode & 0o777) == (4242, 0o700)
    assert client.delete(f"/api/sessions/{first['id']}", headers=_auth(world)).json["state"] == "stopped"
    with session_scope(settings) as db:
        db.scalar(select(Node).where(Node.name == "far1")).drained = True
    second = _launch(client, world).json
    assert second["node"] == "far2", second
    code, output = broker.backend.exec(NodeRef.of(_node(settings, "far2")), _row(settings, second["id"]).backend_state,
                                       ["cat", f"/home/{user}/note"], "4242:4242", {})
    assert (code, output.strip()) == (0, "written-on-far1")
    client.delete(f"/api/sessions/{second['id']}", headers=_auth(world))


def test_a_far_node_without_the_experiments_data_fails_the_launch_at_once(far, far_cluster):
    settings, world, _broker, client = far
    hidden = settings.data_dir / "experiments" / "only-on-the-platform"  # under the platform's data: not on nodes
    hidden.mkdir(parents=True)
    with session_scope(settings) as db:
        db.scalar(select(Experiment).where(Experiment.code == world["e1"])).data_path = str(hidden)
    began = time.monotonic()
    reply = _launch(client, world)
    assert time.monotonic() - began < 10
    assert reply.status_code >= 400
    message = reply.json["error"] if "error" in reply.json else str(reply.json)
    assert "node far1" in message and str(hidden) in message, message


def test_asci_node_commands_register_rotate_drain_and_remove_a_far_node(far_cluster, pg_settings, tmp_path):
    import json
    import shutil
    import subprocess
    import sys

    far2 = far_cluster.nodes["far2"]
    tls = far2.tls()
    environment = dict(os.environ, **pg_settings.to_environ())

    def asci(*argv):
        return subprocess.run([sys.executable, "-m", "asci", *argv], env=environment, capture_output=True, text=True)

    added = asci("node", "add", "far2", "--url", far2.docker_url, "--agent", far2.agent, "--tls-ca", tls["tls_ca"],
                 "--tls-cert", tls["tls_cert"], "--tls-key", tls["tls_key"])
    assert added.returncode == 0, added.stderr
    assert f"(agent {far2.agent})" in added.stdout
    # an agent address where nothing answers is refused, and nothing is registered
    wrong = asci("node", "add", "far9", "--url", far2.docker_url, "--agent", f"{far2.address}:1", "--tls-ca",
                 tls["tls_ca"], "--tls-cert", tls["tls_cert"], "--tls-key", tls["tls_key"])
    assert wrong.returncode != 0 and "agent" in wrong.stderr and "Traceback" not in wrong.stderr
    # rotation: the platform's files move (a new copy); engine and agent answer with them
    rotated = tmp_path / "rotated"
    rotated.mkdir()
    for name in ("ca.pem", "cert.pem", "key.pem"):
        shutil.copy2(far_cluster.pki / name, rotated / name)
    updated = asci("node", "update", "far2", "--tls-cert", str(rotated / "cert.pem"), "--tls-key",
                   str(rotated / "key.pem"))
    assert updated.returncode == 0, updated.stderr
    rogue = tmp_path / "rogue"
    certs.init(rogue, name="rogue")
    refused = asci("node", "update", "far2", "--tls-cert", str(rogue / "cert.pem"), "--tls-key", str(rogue / "key.pem"))
    assert refused.returncode != 0 and "TLS" in refused.stderr
    assert asci("node", "drain", "far2").returncode == 0
    [row] = [r for r in json.loads(asci("node", "list", "--json").stdout) if r["name"] == "far2"]
    assert row["drained"] is True and row["agent"] == far2.agent
    with session_scope(pg_settings) as db:
        assert db.scalar(select(Node).where(Node.name == "far2")).tls_cert == str(rotated / "cert.pem")  # kept
    assert asci("node", "resume", "far2").returncode == 0
    assert asci("node", "remove", "far2").returncode == 0
    assert [r for r in json.loads(asci("node", "list", "--json").stdout) if r["name"] == "far2"] == []
