"""A swarm of two machines: the manager a dockerd here (the ``swarm_node`` fixture, on a loopback address
of its own), the worker a far node (``tests/farnodes.py``: own mount and pid namespaces, own engine and
agent on a loopback address of its own, TLS only, the platform's data hidden) that joined with the
manager's worker token through its engine's TLS API. With ``ASCI_BROKER_BACKEND=swarm`` the broker
places a desktop service on the worker, registered with its agent: the agent makes the session folder
on the worker (the service's mounts name the worker's paths), proves the task's VNC server and relays
it; nothing of the session is in the platform's run folder; files go in and out through the worker's
engine; stopping removes the service and the folder on the worker. The smoke gate's probe runs there."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from sqlalchemy import select

from asci import rfb
from asci.db import session_scope
from broker import probe_desktop, register_node, service
from broker.agent_client import parse_socket_uri
from broker.backends.base import NodeRef
from broker.backends.docker import DockerBackend
from broker.backends.swarm import NODE_LABEL
from broker.models import DesktopSession, Node
from broker.reconcile import reconcile
from tests.daemons import gossip_free_address
from tests.farnodes import far_hidden
from tests.support import make_world
from web import create_app
from web.vnc_tokens import make_token, resolve

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.postgres, pytest.mark.slow]
WORKER = "swfar1"
# addresses of no other far node or swarm fixture; the worker's gossip port 7946 must be free on it
WORKER_ADDRESSES = ("127.0.0.4", "127.0.0.24", "127.0.0.124", "127.0.0.224")


@pytest.fixture(scope="module")
def two_machines(tmp_path_factory, swarm_node, desktop_image):
    """The swarm of ``swarm_node`` (manager, here) and a far node joined as its worker; the desktop image
    pulled into the worker once. Yields ``(cluster, worker, manager client)``."""
    from tests.farnodes import FarCluster

    address = gossip_free_address(WORKER_ADDRESSES)
    if address is None:
        pytest.fail(f"port 7946 is taken on every address tried for the worker: {WORKER_ADDRESSES}")
    cluster = FarCluster(far_hidden(tmp_path_factory)).start(count=0)
    manager = swarm_node.daemon.client()
    worker = None
    try:
        worker = cluster.add(WORKER, address)
        worker.join_swarm(manager)
        backend = DockerBackend()
        backend.ensure_image(NodeRef(worker.name, worker.docker_url, **worker.tls()), desktop_image)
        backend.close()
    except Exception:
        if worker is not None:
            print(worker.log_tail())
            worker.leave_swarm(manager)
        cluster.stop()
        manager.close()
        raise
    yield cluster, worker, manager
    worker.leave_swarm(manager)
    cluster.stop()
    manager.close()


@pytest.fixture
def swarm(pg_settings, two_machines, swarm_node, desktop_image, tmp_path, make_broker):
    """A broker with the Swarm backend (the manager's socket first in the Docker hosts) and the worker
    registered with its agent; experiment data and homes on the cluster's shared storage."""
    cluster, worker, manager = two_machines
    settings = pg_settings.replace(
        broker_backend="swarm", docker_hosts=(swarm_node.url,), session_start_timeout_s=90,
        broker_instance=f"swf{tmp_path.name[-10:].lower().replace('_', '-')}"[:40],
        experiment_data_roots=(cluster.experiments, pg_settings.data_dir / "experiments"),
        home_root=str(cluster.homes))
    world = make_world(settings, [], image=desktop_image.split("@")[0] + ":v1", digest=desktop_image.split("@")[1])
    broker = make_broker(settings, service.make_backend(settings))
    with session_scope(settings) as db:
        register_node(settings, db, WORKER, worker.docker_url, agent=worker.agent, backend=broker.backend,
                      **worker.tls())
    yield settings, world, broker, create_app(settings, broker=broker).test_client()
    for svc in manager.services.list(filters={"label": f"asci.broker={settings.broker_instance}"}):
        svc.remove()
    broker.backend.close()


def _auth(world, who="alice"):
    return {"Authorization": f"Bearer {world['tokens'][who]}"}


def _row(settings, session_id) -> DesktopSession:
    with session_scope(settings) as db:
        row = db.get(DesktopSession, session_id)
        db.expunge(row)
        return row


def _wait_for(condition, timeout: float, step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(step)


def test_a_desktop_service_on_the_worker_is_drawn_through_its_agent(swarm, two_machines, artifacts_dir):
    settings, world, broker, api = swarm
    cluster, worker, manager = two_machines
    # two machines: the manager here and the far node, a worker labelled as the ASCI node
    roles = {node.attrs["Spec"]["Role"]: node for node in manager.nodes.list()}
    assert set(roles) == {"manager", "worker"} and roles["worker"].id == worker.swarm_node_id
    assert roles["worker"].attrs["Spec"]["Labels"][NODE_LABEL] == WORKER
    engine = worker.client()
    assert engine.info()["Swarm"]["NodeAddr"] == worker.address  # it advertises its own address

    reply = api.post("/api/sessions", json={"environment": world["env"], "experiment": world["e1"], "cpus": 1,
                                            "memory": "1g"}, headers=_auth(world))
    assert reply.status_code == 201, reply.json
    session = reply.json
    assert session["node"] == WORKER and session["state"] == "running"
    row = _row(settings, session["id"])
    node, key = parse_socket_uri(row.vnc_socket)
    assert node == WORKER and key == f"{settings.broker_instance}-s{session['id']}"
    # nothing of the session on the platform's side: its folder is on the worker, held by its agent
    assert not (settings.run_dir / key).exists()
    assert not [path for path in settings.run_dir.rglob("*") if key in path.name]
    assert (worker.run_dir / key / "vnc").stat().st_uid == 0  # locked by the worker's agent
    assert key in worker.agent_node().held()
    # the service's task runs on the worker; its mounts name the worker's paths the agent made
    svc = manager.services.get(row.backend_state["service_id"])
    [task] = svc.tasks()
    assert task["NodeID"] == worker.swarm_node_id and task["Status"]["State"] == "running"
    container = engine.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
    mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
    user = world["names"]["alice"]
    assert mounts["/run/asci/vnc"]["Source"] == str(worker.run_dir / key / "vnc")
    assert mounts["/run/asci/secret"]["Source"] == str(worker.run_dir / key / "secret")
    assert mounts[f"/home/{user}"]["Source"] == str(cluster.homes / user)
    assert container.attrs["HostConfig"]["CapDrop"] == ["ALL"]
    # websockify's plugin bridges to the worker agent's relay; the desktop is drawn through it
    kind, path = resolve(settings, broker, make_token(settings, world["ids"]["alice"], session["id"]))
    assert kind == "unix_socket" and path.startswith(str(settings.run_dir / "bridges"))
    frame = rfb.wait_for_desktop(path, row.vnc_password, timeout=60)
    assert frame.is_drawn() and frame.width >= 640
    (artifacts_dir / "desktop-on-a-swarm-worker.png").write_bytes(frame.to_png())
    assert "relay opened" in (worker.root / "agent.log").read_text()

    # files in and out through the files API: the task's container on the worker's engine
    base = f"/api/sessions/{session['id']}/files"
    payload = os.urandom(3 << 20)
    put = api.put(f"{base}/results/in.bin", data=payload, headers=_auth(world))
    assert put.status_code == 201, put.json
    assert put.json["size"] == len(payload)
    listed = api.get(f"{base}/results/", headers=_auth(world))
    assert listed.status_code == 200
    assert [(e["name"], e["type"], e["size"]) for e in listed.json["entries"]] == [("in.bin", "file", len(payload))]
    got = api.get(f"{base}/results/in.bin", headers=_auth(world))
    assert got.status_code == 200 and got.headers["Content-Length"] == str(len(payload))
    assert hashlib.sha256(got.data).hexdigest() == hashlib.sha256(payload).hexdigest()
    uid = container.attrs["Config"]["User"].split(":")[0]  # the session's uid, as the service runs it
    inside = container.exec_run(["sh", "-c", f"stat -c '%u' /home/{user}/results/in.bin; "
                                 f"sha256sum /home/{user}/results/in.bin | cut -c1-64"], user=f"{uid}:{uid}")
    assert inside.output.decode().split() == [uid, hashlib.sha256(payload).hexdigest()], inside.output
    # on shared storage, as the worker's agent made the home
    assert (cluster.homes / user / "results" / "in.bin").read_bytes() == payload

    # reconciliation sees the worker up (engine through the manager, agent) and keeps the session
    with session_scope(settings) as db:
        summary = reconcile(broker, db)
        node_row = db.scalar(select(Node).where(Node.name == WORKER))
        assert (node_row.state, node_row.agent_state) == ("up", "up"), summary
        assert db.get(DesktopSession, session["id"]).state == "running"

    stopped = api.delete(f"/api/sessions/{session['id']}", headers=_auth(world)).json
    assert stopped["state"] == "stopped"
    _wait_for(lambda: not manager.services.list(filters={"id": svc.id}), timeout=30)
    _wait_for(lambda: not engine.containers.list(all=True, filters={"id": container.id}), timeout=30)
    assert key not in worker.agent_node().held()
    engine.close()


def test_the_smoke_gate_probe_runs_on_the_swarm_worker(swarm, two_machines, desktop_image):
    settings, _world, _broker, _api = swarm
    _cluster, worker, manager = two_machines
    with probe_desktop(settings, desktop_image, "swarm-far") as probe:
        assert probe.node.name == WORKER and probe.socket.startswith(str(settings.run_dir / "bridges"))
        [svc] = manager.services.list(filters={"label": "asci.probe=1"})
        assert [task["NodeID"] for task in svc.tasks()] == [worker.swarm_node_id]
        assert rfb.wait_for_desktop(probe.socket, probe.password, timeout=60).is_drawn()
        assert probe.run("id -u")[1].strip() == "65000"
        assert [name for name in worker.agent_node().held() if name.startswith("probe-")]
    assert manager.services.list(filters={"label": "asci.probe=1"}) == []
    assert not [name for name in worker.agent_node().held() if name.startswith("probe-")]


def _swarm_state(manager, node_id) -> str:
    return manager.nodes.get(node_id).attrs["Status"]["State"]


def test_a_worker_that_fails_while_the_manager_stays_up_loses_its_session_and_comes_back(swarm, two_machines):
    settings, world, broker, api = swarm
    _cluster, worker, manager = two_machines
    manager.swarm.reload()
    spec = manager.swarm.attrs["Spec"]
    spec["Dispatcher"]["HeartbeatPeriod"] = 1_000_000_000  # the manager notices a silent worker in seconds
    manager.api.update_swarm(version=manager.swarm.attrs["Version"]["Index"], swarm_spec=spec)
    session = api.post("/api/sessions", json={"environment": world["env"], "experiment": world["e1"], "cpus": 1,
                                              "memory": "1g"}, headers=_auth(world)).json
    assert session["node"] == WORKER and session["state"] == "running", session
    row = _row(settings, session["id"])
    _node_name, key = parse_socket_uri(row.vnc_socket)
    service_id = row.backend_state["service_id"]
    # the worker's engine dies (its agent stays): the broker marks the node down, the session lost, and the
    # session's folder goes on the worker through its agent; the manager, still up, sees the worker down
    worker.stop_engine()
    with session_scope(settings) as db:
        assert reconcile(broker, db)["nodes_down"] == 1
        node_row = db.scalar(select(Node).where(Node.name == WORKER))
        assert node_row.state == "down" and WORKER in node_row.last_error
        lost = db.get(DesktopSession, session["id"])
        assert lost.state == "lost" and "stopped answering" in lost.message
    assert key not in worker.agent_node().held()
    began = time.monotonic()
    _wait_for(lambda: _swarm_state(manager, worker.swarm_node_id) == "down", timeout=30)
    print(f"the manager saw the worker down {time.monotonic() - began:.1f} s after the broker did")
    # the engine comes back: the worker rejoins the swarm by itself; its task ended and none replaced it
    worker.start_engine()
    _wait_for(lambda: _swarm_state(manager, worker.swarm_node_id) == "ready", timeout=30)
    svc = manager.services.get(service_id)
    _wait_for(lambda: [task["Status"]["State"] for task in svc.tasks()] not in (["running"], []), timeout=30)
    [task] = svc.tasks()  # restart policy none: no fresh desktop behind the user's back
    print(f"the task after the worker's engine came back: {task['Status']['State']} ({task['Status'].get('Err', '')})")
    # the broker marks the node up and removes the lost session's service through the manager
    with session_scope(settings) as db:
        summary = reconcile(broker, db)
        assert summary["nodes_up"] == 1 and summary["removed"] == 1, summary
        assert db.scalar(select(Node).where(Node.name == WORKER)).state == "up"
    _wait_for(lambda: not manager.services.list(filters={"id": service_id}), timeout=30)
    engine = worker.client()
    _wait_for(lambda: not engine.containers.list(
        all=True, filters={"label": f"asci.broker={settings.broker_instance}"}), timeout=30)
    engine.close()
