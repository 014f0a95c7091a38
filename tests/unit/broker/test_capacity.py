"""Capacity with a fake engine: guarantee and limit, engine-reported node capacity with reserve and
overcommit, spread and pack, 422 for what no node could hold and 503 with Retry-After for a full platform."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from asci import accounts
from asci.db import session_scope
from broker import register_node
from broker.backends.base import Capacity
from broker.errors import NoCapacity, NodeUnreachable
from broker.models import CapacitySource, DesktopSession, ExperimentMember, Node
from broker.placement import schedulable
from broker.reconcile import reconcile
from tests.support import PASSWORD, always_ready, make_world
from tests.support import user_of as user
from web import create_app

GIB = 1 << 30
THIS_MACHINE = Capacity(2.0, 25_276_510_208)  # docker info here: NCPU 2, MemTotal 23.5 GiB


@pytest.fixture
def fake(settings, make_broker):
    """The world without nodes; nodes are registered through ``register_node`` from the fake engine."""
    world = make_world(settings, [])
    broker = make_broker(settings)
    return settings, world, broker, broker.backend


def _register(settings, name, capacity, backend, **options):
    backend.capacities[name] = capacity
    with session_scope(settings) as db:
        node = register_node(settings, db, name, f"unix:///{name}.sock", backend=backend, **options)
        db.commit()
        return node.id


def _launch(broker, settings, world, who="alice", **options):
    with session_scope(settings) as db:
        desktop = broker.launch(db, db.merge(user(settings, world, who)), world["env"], "v1", world["e1"], **options)
        return desktop.id, desktop.node.name


def _members(settings, world, count):
    """``count`` more users, members of E1 (each launches one desktop, as people do)."""
    from broker.models import Experiment

    ids = []
    with session_scope(settings) as db:
        experiment = db.scalar(select(Experiment).where(Experiment.code == world["e1"]))
        for number in range(count):
            row = accounts.create_user(db, f"user{number:02d}-{world['suffix']}", PASSWORD)
            db.add(ExperimentMember(experiment_id=experiment.id, user_id=row.id))
            db.flush()
            ids.append(row.id)
    return ids


def test_node_capacity_comes_from_the_engine_with_the_settings_reserve_and_overcommit(fake):
    settings, world, broker, backend = fake
    node_id = _register(settings, "local", THIS_MACHINE, backend)
    with session_scope(settings) as db:
        node = db.get(Node, node_id)
        assert (node.cpus, node.memory_bytes, node.capacity_source) == (2.0, THIS_MACHINE.memory_bytes, "engine")
        assert (node.reserve_cpus, node.reserve_memory_bytes, node.cpu_overcommit, node.memory_overcommit) == (
            0.5, 1 << 30, 4.0, 1.0)
        assert schedulable(node) == (6.0, THIS_MACHINE.memory_bytes - GIB)
    # administrators may give the numbers: those are kept, not refreshed
    manual = _register(settings, "big", Capacity(1, GIB), backend, cpus=64, memory_bytes=256 * GIB,
                       cpu_overcommit=2.0, reserve_memory_bytes=0)
    with session_scope(settings) as db:
        node = db.get(Node, manual)
        assert (node.cpus, node.capacity_source, schedulable(node)) == (64.0, CapacitySource.MANUAL, (127.0, 256 * GIB))


def test_twenty_users_fit_this_machine_with_the_embedded_defaults(fake):
    """The engine's numbers of this 2-CPU, 23.5 GiB machine and the default guarantee (0.25 CPU,
    512 MiB): (2 - 0.5) x 4 / 0.25 = 24 desktops. (The same with real desktops:
    tests/integration/broker/test_capacity_live.py.)"""
    settings, world, broker, backend = fake
    _register(settings, "local", THIS_MACHINE, backend)
    users = _members(settings, world, 25)
    admitted, refused = [], []
    for user_id in users:
        with session_scope(settings) as db:
            row = db.get(accounts.User, user_id)
            try:
                admitted.append(broker.launch(db, row, world["env"], "v1", world["e1"]).id)
            except NoCapacity as exc:
                refused.append(exc)
    assert len(admitted) == 24 and len(refused) == 1
    assert refused[0].retry_after == 30 and "try again later" in str(refused[0])
    with session_scope(settings) as db:
        rows = db.scalars(select(DesktopSession).where(DesktopSession.id.in_(admitted))).all()
        assert {(r.cpu_guarantee, r.memory_guarantee_bytes, r.cpus, r.memory_bytes) for r in rows} == {
            (0.25, 512 << 20, 2.0, 4 << 30)}
        assert len({r.user_id for r in rows}) == 24
    [params] = [p for p in backend.created.values()][:1]
    assert params["nano_cpus"] == 2 * 10**9 and params["cpu_shares"] == 256 and params["mem_reservation"] == 512 << 20


def test_too_large_is_422_at_once_and_full_is_503_with_retry_after(fake):
    settings, world, broker, backend = fake
    _register(settings, "small", Capacity(4, 8 * GIB), backend, reserve_cpus=0, reserve_memory_bytes=0,
              cpu_overcommit=1.0)
    client = create_app(settings, broker=broker).test_client()
    headers = {"Authorization": f"Bearer {world['tokens']['alice']}"}
    body = {"environment": world["env"], "experiment": world["e1"]}
    reply = client.post("/api/sessions", json={**body, "memory": "16g", "memory_guarantee": "9g"}, headers=headers)
    assert reply.status_code == 422 and reply.json["kind"] == "Unsatisfiable"
    assert "more than any node can hold" in reply.json["error"] and "small" in reply.json["error"]
    reply = client.post("/api/sessions", json={**body, "gpu": True}, headers=headers)
    assert reply.status_code == 422 and "no node has a GPU" in reply.json["error"]
    with session_scope(settings) as db:
        assert db.scalars(select(DesktopSession)).all() == []  # refused before anything was recorded
    assert backend.created == {}
    # a guarantee that fits the node, twice: the second waits for room (503, Retry-After)
    first = client.post("/api/sessions", json={**body, "cpus": 4, "cpu_guarantee": 3}, headers=headers)
    assert first.status_code == 201 and first.json["cpu_guarantee"] == 3 and first.json["cpus"] == 4
    second = client.post("/api/sessions", json={**body, "cpus": 4, "cpu_guarantee": 3}, headers=headers)
    assert second.status_code == 503 and second.headers["Retry-After"] == "30"
    assert "try again later" in second.json["error"]
    # a CPU limit above the node's CPUs is cut to them (Docker refuses more)
    third = client.post("/api/sessions", json={**body, "cpus": 16, "cpu_guarantee": 0.5}, headers=headers)
    assert third.status_code == 201 and third.json["cpus"] == 4.0
    # the node goes down: its capacity is gone for now, not for ever -> 503, not 422
    backend.down.add("small")
    with session_scope(settings) as db:
        reconcile(broker, db)
    reply = client.post("/api/sessions", json=body, headers=headers)
    assert reply.status_code == 503


def test_spread_shares_out_and_pack_fills_one_node_first(fake):
    settings, world, broker, backend = fake
    for name in ("a", "b"):
        _register(settings, name, Capacity(8, 16 * GIB), backend, reserve_cpus=0, reserve_memory_bytes=0)
    placed = [_launch(broker, settings, world, cpus=1)[1] for _ in range(3)]
    assert placed == ["a", "b", "a"]
    packing = broker.__class__(settings.replace(placement_policy="pack"), backend, ready=always_ready)
    # pack: the fullest node that fits (a holds two), until it is full
    placed = [_launch(packing, settings.replace(placement_policy="pack"), world, "root", memory_guarantee="4g",
                      memory="4g")[1] for _ in range(2)]
    assert placed == ["a", "a"]


def test_reconcile_keeps_engine_capacity_current_and_marks_the_node_up_again(fake):
    settings, world, broker, backend = fake
    node_id = _register(settings, "local", Capacity(2, 8 * GIB), backend)
    backend.capacities["local"] = Capacity(4, 16 * GIB)  # the machine got more memory and CPUs
    backend.down.add("local")
    with session_scope(settings) as db:
        assert reconcile(broker, db)["nodes_down"] == 1
    backend.down.clear()
    with session_scope(settings) as db:
        assert reconcile(broker, db)["nodes_up"] == 1
        node = db.get(Node, node_id)
        assert (node.state, node.cpus, node.memory_bytes) == ("up", 4.0, 16 * GIB)


def test_registering_an_unreachable_engine_fails_and_records_nothing(fake):
    settings, world, broker, backend = fake
    backend.down.add("gone")
    with pytest.raises(NodeUnreachable):
        with session_scope(settings) as db:
            register_node(settings, db, "gone", "unix:///gone.sock", backend=backend)
    with session_scope(settings) as db:
        assert db.scalars(select(Node)).all() == []


def test_the_node_view_shows_capacity_reserve_overcommit_and_guarantees_used(fake):
    settings, world, broker, backend = fake
    _register(settings, "local", THIS_MACHINE, backend)
    _launch(broker, settings, world, cpus=1, memory="2g", cpu_guarantee=0.5, memory_guarantee="1g")
    client = create_app(settings, broker=broker).test_client()
    [node] = client.get("/api/nodes", headers={"Authorization": f"Bearer {world['tokens']['root']}"}).json["nodes"]
    assert node["capacity_source"] == "engine" and node["cpus"] == 2.0
    assert node["reserve"] == {"cpus": 0.5, "memory_bytes": GIB} and node["overcommit"] == {"cpus": 4.0, "memory": 1.0}
    assert node["schedulable"] == {"cpus": 6.0, "memory_bytes": THIS_MACHINE.memory_bytes - GIB}
    assert node["used"] == {"sessions": 1, "cpus": 0.5, "memory_bytes": GIB}


def test_the_admin_nodes_page_shows_guarantees_used_of_schedulable(fake):
    from tests.support import login

    settings, world, broker, backend = fake
    _register(settings, "local", THIS_MACHINE, backend)
    _launch(broker, settings, world, cpu_guarantee=0.5, memory_guarantee="1g")
    client = create_app(settings, broker=broker).test_client()
    login(client, world["names"]["root"])
    page = client.get("/admin/nodes").get_data(as_text=True)
    assert "0.5 / 6" in page and "1.0 / 22.5 GiB" in page and "(engine)" in page
