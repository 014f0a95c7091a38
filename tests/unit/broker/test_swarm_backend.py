"""The broker on the Swarm backend (a fake Swarm manager): a desktop is a service with the session's
folder (socket and password file), which goes when the session ends; the backend's state is opaque to
the core, so a re-adopted session can be stopped and an orphaned service is removed; the swarm node is
found by its engine's node id and labelled once; a node whose folders are on the worker (its agent) gets a
service whose mounts name the worker's paths. (Real swarms: tests/integration/broker/test_swarm_live.py,
and with a far worker through its agent, test_swarm_far.py.)"""

from __future__ import annotations

import itertools

import docker
import pytest
from sqlalchemy import select

from asci.db import session_scope
from broker import service
from broker.agent_client import socket_uri
from broker.backends.base import Capacity, NodeRef
from broker.backends.swarm import SwarmBackend
from broker.errors import BackendError, NodeUnreachable
from broker.models import DesktopSession
from broker.node_side import LocalNodeSide
from broker.reconcile import reconcile
from tests.support import always_ready, make_world
from tests.support import user_of as user

NODES = [dict(name="swarm-node", docker_url="unix:///fake-manager.sock", cpus=16, memory_bytes=64 << 30,
              max_sessions=10)]


class FakeService:
    def __init__(self, manager, service_id, params):
        self.manager, self.id, self.name = manager, service_id, params["name"]
        self.params = params
        self.attrs = {"Spec": {"Name": params["name"], "Labels": dict(params["labels"]),
                               "TaskTemplate": {"Placement": {"Constraints": list(params["constraints"])}}}}
        self.task_state = "running"

    def tasks(self, filters=None):
        return [{"CreatedAt": "2026-11-25T00:00:00Z", "Status": {"State": self.task_state, "Err": "",
                                                                  "ContainerStatus": {"ContainerID": "c-" + self.id}}}]

    def remove(self):
        self.manager.services.pop(self.id)


class FakeServices:
    def __init__(self, manager):
        self.manager = manager

    def create(self, **params):
        service_id = f"svc{next(self.manager.ids)}"
        self.manager.services[service_id] = FakeService(self.manager, service_id, params)
        return self.manager.services[service_id]

    def get(self, ident):
        for svc in self.manager.services.values():
            if ident in (svc.id, svc.name):
                return svc
        raise docker.errors.NotFound(f"service {ident} not found")

    def list(self, filters=None):
        wanted = dict(label.split("=", 1) for label in (filters or {}).get("label", []))
        return [svc for svc in self.manager.services.values()
                if all(svc.attrs["Spec"]["Labels"].get(k) == v for k, v in wanted.items())]


class FakeNode:
    def __init__(self, node_id, labels):
        self.id = node_id
        self.attrs = {"ID": node_id, "Spec": {"Labels": dict(labels), "Availability": "active"},
                      "Status": {"State": "ready"},
                      "Description": {"Resources": {"NanoCPUs": 8 * 10**9, "MemoryBytes": 32 << 30}}}

    def update(self, spec):
        self.attrs["Spec"] = spec

    def reload(self):
        pass


class FakeNodes:
    def __init__(self):
        self.nodes = [FakeNode("n0d31d", {})]

    def list(self, filters=None):
        return list(self.nodes)


class FakeEngines:
    """The node's own engine: swarm node id, image pulls, home volumes."""

    def __init__(self):
        self.homes, self.pulled = [], []

    def info(self, node):
        return {"Swarm": {"NodeID": "n0d31d"}}

    def ping(self, node):
        pass

    def ensure_image(self, node, image, log=None):
        self.pulled.append(image)
        return True

    def prepare_home(self, node, spec):
        self.homes.append(spec.home_volume)

    def has_network(self, node, name):
        return False  # a daemon with --bridge=none

    def poll(self, node, state):
        return "missing"  # the task's container is gone as soon as its service is

    def close(self):
        pass


class FakeManager:
    def __init__(self):
        self.services: dict[str, FakeService] = {}
        self.ids = itertools.count(1)
        self.nodes = FakeNodes()

    @property
    def client(self):
        client = type("Client", (), {})()
        client.services, client.nodes = FakeServices(self), self.nodes
        return client


@pytest.fixture
def swarm(settings, make_broker):
    manager = FakeManager()
    world = make_world(settings, NODES)
    broker = make_broker(settings, SwarmBackend(client=manager.client, engines=FakeEngines()), ready=always_ready)
    return settings, world, broker, manager


def test_a_readopted_session_on_swarm_can_be_stopped(swarm):
    settings, world, broker, manager = swarm
    with session_scope(settings) as db:
        desktop = broker.launch(db, db.merge(user(settings, world, "alice")), world["env"], "current", world["e1"])
        session_id, started_state = desktop.id, dict(desktop.backend_state)
        assert set(started_state) == {"service_id", "service_name"}
        # the service serves VNC on the session's socket, in the folder the broker made for it
        folder = settings.run_dir / f"{settings.broker_instance}-s{session_id}"
        assert desktop.vnc_socket == str(folder / "vnc" / "vnc.sock") and (folder / "secret" / "passwd").exists()
        params = manager.services[started_state["service_id"]].params
        assert {m["Target"]: m["Source"] for m in params["mounts"]}["/run/asci/vnc"] == str(folder / "vnc")
        assert "networks" not in params and "VNC_SOCKET=/run/asci/vnc/vnc.sock" in params["env"]
        # the broker restarts before it recorded anything about the service
        desktop.state, desktop.backend_state = "starting", {}
        desktop.created_at = desktop.created_at.replace(year=desktop.created_at.year - 1)
    restarted = service.Broker(settings, broker.backend, ready=always_ready)
    with session_scope(settings) as db:
        assert reconcile(restarted, db)["adopted"] == 1
        desktop = db.get(DesktopSession, session_id)
        assert desktop.state == "running" and desktop.backend_state == started_state
        restarted.stop(db, session_id, user(settings, world, "alice"))
        assert db.get(DesktopSession, session_id).state == "stopped"
    assert manager.services == {}, "the service of the re-adopted session must be removed"
    assert not folder.exists(), "the ended session's folder must be removed"


def test_reconcile_removes_an_orphaned_service_and_loses_a_dead_task(swarm):
    settings, world, broker, manager = swarm
    with session_scope(settings) as db:
        alice = db.merge(user(settings, world, "alice"))
        ended = broker.launch(db, alice, world["env"], "current", world["e1"])
        dying = broker.launch(db, alice, world["env"], "current", world["e1"])
        ended_service = ended.backend_state["service_id"]
        dying_service = dying.backend_state["service_id"]
        ended.state = "stopped"  # the session ended, but its service was left behind
    manager.services[dying_service].task_state = "failed"
    with session_scope(settings) as db:
        summary = reconcile(broker, db)
        assert summary["removed"] == 1 and summary["lost"] == 1
        assert db.scalar(select(DesktopSession.state).where(DesktopSession.id == dying.id)) == "lost"
    assert ended_service not in manager.services and dying_service not in manager.services


def test_the_swarm_node_is_labelled_once_and_reports_its_capacity(swarm):
    settings, world, broker, manager = swarm
    ref = NodeRef("swarm-node", "unix:///fake-node.sock")
    assert broker.backend.capacity(ref) == Capacity(8.0, 32 << 30)
    [node] = manager.nodes.nodes
    assert node.attrs["Spec"]["Labels"] == {"asci.node": "swarm-node"}
    broker.backend.ping(ref)
    node.attrs["Status"]["State"] = "down"
    with pytest.raises(NodeUnreachable, match="swarm node swarm-node is down"):
        broker.backend.ping(ref)
    with pytest.raises(BackendError, match="is ASCI node swarm-node already"):
        broker.backend.ping(NodeRef("other", "unix:///other.sock"))  # the same engine under another name


class WorkerSide(LocalNodeSide):
    """A node side whose folders are on the worker (``run_dir`` stands for the worker's run folder), as an
    agent's are: the session records ``agent://node/key``, and releasing removes the folder there."""

    def socket_of(self, node, key, folder):
        return socket_uri(node.name, key)

    def release(self, node, socket):
        import shutil

        shutil.rmtree(self.run_dir / socket.rsplit("/", 1)[1], ignore_errors=True)


def test_a_service_on_a_node_with_an_agent_mounts_the_folder_the_node_side_made_on_the_worker(settings, tmp_path):
    manager = FakeManager()
    world = make_world(settings, NODES)
    worker_run = tmp_path / "worker-run"
    side = WorkerSide(worker_run, ready=always_ready)
    broker = service.Broker(settings, SwarmBackend(client=manager.client, engines=FakeEngines()),
                            node_sides=lambda node: side)
    with session_scope(settings) as db:
        desktop = broker.launch(db, db.merge(user(settings, world, "alice")), world["env"], "current", world["e1"])
        session_id, key = desktop.id, f"{settings.broker_instance}-s{desktop.id}"
        assert desktop.vnc_socket == f"agent://swarm-node/{key}"
        params = manager.services[desktop.backend_state["service_id"]].params
    sources = {m["Target"]: m["Source"] for m in params["mounts"]}
    assert sources["/run/asci/vnc"] == str(worker_run / key / "vnc")
    assert sources["/run/asci/secret"] == str(worker_run / key / "secret")
    assert sources["/etc/hosts"] == str(worker_run / key / "hosts")
    assert not (settings.run_dir / key).exists()
    with session_scope(settings) as db:
        broker.stop(db, session_id, user(settings, world, "alice"))
    assert manager.services == {} and not (worker_run / key).exists()
