"""The broker on the Swarm backend (a fake Swarm manager): a new desktop is refused (the service API
cannot express the platform's hardening) and nothing is left; services an earlier broker started are
still re-adopted, stopped, lost and removed (the backend's state is opaque to the core)."""

from __future__ import annotations

import datetime as dt
import itertools

import docker
import pytest
from sqlalchemy import select

from asci.db import session_scope, utcnow
from broker import service
from broker.backends.swarm import SwarmBackend
from broker.errors import BackendError
from broker.models import DesktopSession, Experiment, Node
from builder.models import Environment, EnvironmentVersion
from broker.reconcile import reconcile
from tests.support import always_ready, make_world
from tests.support import user_of as user

NODES = [dict(name="swarm-node", docker_url="unix:///fake-manager.sock", cpus=16,
              memory_bytes=64 << 30, max_sessions=10)]


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


class FakeNodes:
    def list(self, filters=None):
        node = type("Node", (), {"attrs": {"Status": {"State": "ready"}}})()
        return [node]


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
def swarm(settings, swap_broker):
    manager = FakeManager()
    world = make_world(settings, NODES)
    broker = swap_broker(settings, SwarmBackend(client=manager.client), ready=always_ready)
    return settings, world, broker, manager


def _service_of_an_earlier_broker(settings, world, manager, state="running"):
    """A session row and its service, as a broker before the Swarm refusal left them."""
    with session_scope(settings) as db:
        version = db.scalar(select(EnvironmentVersion).join(Environment).where(Environment.name == world["env"]))
        experiment = db.scalar(select(Experiment).where(Experiment.code == world["e1"]))
        node = db.scalar(select(Node).where(Node.name == "swarm-node"))
        desktop = DesktopSession(user_id=world["ids"]["alice"], experiment_id=experiment.id,
                                 environment_version_id=version.id, image=version.image_reference, node_id=node.id,
                                 state=state, backend_state={}, created_at=utcnow() - dt.timedelta(days=1))
        db.add(desktop)
        db.flush()
        session_id = desktop.id
    labels = {"asci.managed": "1", "asci.broker": settings.broker_instance, "asci.session": str(session_id)}
    service = manager.client.services.create(name=f"asci-old-s{session_id}", labels=labels,
                                             constraints=["node.hostname == swarm-node"])
    return session_id, {"service_id": service.id, "service_name": service.name}


def test_a_launch_on_swarm_is_refused_with_the_reason_and_leaves_nothing(swarm):
    settings, world, broker, manager = swarm
    with session_scope(settings) as db:
        with pytest.raises(BackendError, match="no-new-privileges"):
            broker.launch(db, db.merge(user(settings, world, "alice")), world["env"], "current", world["e1"])
        [desktop] = db.scalars(select(DesktopSession)).all()
        assert desktop.state == "failed" and "cannot express" in desktop.message
    assert manager.services == {}
    assert list(settings.run_dir.iterdir()) == [], "the refused session's folder must be removed"


def test_a_readopted_session_on_swarm_can_be_stopped(swarm):
    settings, world, broker, manager = swarm
    session_id, service_state = _service_of_an_earlier_broker(settings, world, manager, state="starting")
    restarted = service.Broker(settings, broker.backend, ready=always_ready)
    with session_scope(settings) as db:
        assert reconcile(restarted, db)["adopted"] == 1
        desktop = db.get(DesktopSession, session_id)
        assert desktop.state == "running" and desktop.backend_state == service_state
        restarted.stop(db, session_id, user(settings, world, "alice"))
        assert db.get(DesktopSession, session_id).state == "stopped"
    assert manager.services == {}, "the service of the re-adopted session must be removed"


def test_reconcile_removes_an_orphaned_service_and_loses_a_dead_task(swarm):
    settings, world, broker, manager = swarm
    ended, ended_state = _service_of_an_earlier_broker(settings, world, manager, state="stopped")
    dying, dying_state = _service_of_an_earlier_broker(settings, world, manager, state="running")
    manager.services[dying_state["service_id"]].task_state = "failed"
    with session_scope(settings) as db:
        summary = reconcile(broker, db)
        assert summary["removed"] == 1 and summary["lost"] == 1
        assert db.scalar(select(DesktopSession.state).where(DesktopSession.id == dying)) == "lost"
    assert manager.services == {}
