"""The launch state machine (``broker.launch``) with the fake backend: each step's committed transition,
each failure state, the retry policy, the node side seam and the background runner."""

import threading
import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from asci.db import session_scope
from broker import LaunchRequest, LocalNodeSide, launch as launching, placement
from broker.errors import (BackendError, BadRequest, ForeignServer, NoCapacity, NodeUnreachable, QuotaExceeded,
                           Unsatisfiable)
from broker.models import DesktopSession, Node
from tests.support import always_ready, make_world
from tests.support import user_of as user

NODES = [dict(name=name, docker_url=f"unix:///{name}.sock", cpus=16, memory_bytes=64 << 30, max_sessions=10)
         for name in ("n1", "n2")]


@pytest.fixture
def env(settings, make_broker):
    world = make_world(settings, NODES)
    broker = make_broker(settings)
    return settings, world, broker


def _request(world, **fields) -> LaunchRequest:
    return LaunchRequest(world["env"], "current", world["e1"], **fields)


def _committed(settings, session_id: int) -> dict:
    """The session's row as another database session sees it (what was committed)."""
    with session_scope(settings) as db:
        row = db.get(DesktopSession, session_id)
        return {"state": row.state, "node": row.node.name if row.node else None, "socket": row.vnc_socket,
                "backend_state": row.backend_state, "message": row.message}


def _count(settings) -> int:
    with session_scope(settings) as db:
        return db.scalar(select(func.count(DesktopSession.id)))


def _node_state(settings, name: str) -> str:
    with session_scope(settings) as db:
        return db.scalar(select(Node.state).where(Node.name == name))


def test_the_table_lists_the_steps_after_reserve_in_order():
    assert [step.name for step in launching.STEPS] == ["place", "prepare", "start", "await"]
    assert [step.commits for step in launching.STEPS] == ["starting", "starting", "starting", "running"]
    assert {step.fails for step in launching.STEPS} == {"failed"}
    assert [step.name for step in launching.STEPS if step.replaces_node] == ["prepare", "start"]


def test_each_step_commits_its_transition(env):
    settings, world, broker = env
    with session_scope(settings) as db:
        launch = launching.reserve(broker, db, db.merge(user(settings, world, "alice")), _request(world))
        sid = launch.desktop.id
        assert _committed(settings, sid) == {"state": "pending", "node": None, "socket": "", "backend_state": {},
                                             "message": ""}
        launching.place(broker, db, launch)
        assert _committed(settings, sid)["state"] == "starting" and _committed(settings, sid)["node"] == "n1"
        launching.prepare(broker, db, launch)
        assert _committed(settings, sid)["socket"] == str(launch.folder.socket)
        assert (launch.folder.secret / "passwd").exists()
        assert _committed(settings, sid)["backend_state"] == {}
        launching.start(broker, db, launch)
        assert set(_committed(settings, sid)["backend_state"]) == {"fake_id"}
        assert _committed(settings, sid)["state"] == "starting"
        launching.await_running(broker, db, launch)
        assert _committed(settings, sid)["state"] == "running"


def test_reserve_refusals_leave_no_row(env):
    settings, world, broker = env
    before = _count(settings)
    with session_scope(settings) as db:
        alice = db.merge(user(settings, world, "alice"))
        with pytest.raises(BadRequest, match="gpu: expected true or false"):
            launching.reserve(broker, db, alice, _request(world, gpu="yes"))
        with pytest.raises(Unsatisfiable):  # no node has a GPU at all
            launching.reserve(broker, db, alice, _request(world, gpu=True))
    assert _count(settings) == before
    quota = settings.session_max_per_user
    with session_scope(settings) as db:
        alice = db.merge(user(settings, world, "alice"))
        for _ in range(quota):
            launching.reserve(broker, db, alice, _request(world))
        with pytest.raises(QuotaExceeded, match=f"at most {quota}"):
            launching.reserve(broker, db, alice, _request(world))
    assert _count(settings) == before + quota


def test_place_without_room_fails_the_session_with_no_capacity(env):
    settings, world, broker = env
    broker.backend.down.update({"n1", "n2"})
    with session_scope(settings) as db:
        for name in ("n1", "n2"):
            db.scalar(select(Node).where(Node.name == name)).state = "down"
    with session_scope(settings) as db, pytest.raises(NoCapacity) as raised:
        broker.launch(db, db.merge(user(settings, world, "alice")), _request(world))
    assert str(raised.value) == "no node has free capacity for this session right now; try again later"
    with session_scope(settings) as db:
        row = db.scalar(select(DesktopSession).order_by(DesktopSession.id.desc()))
        assert (row.state, row.message) == ("failed", "no node has free capacity for this session right now")
        assert row.stopped_at is not None


def test_place_gives_up_after_its_tries(env, monkeypatch):
    settings, world, broker = env
    tried, lock_node = [], placement.lock_node

    def taken(db, node_id):  # as if another launch filled the node between the choice and the lock
        tried.append(node_id)
        node = lock_node(db, node_id)
        node.state = "draining"  # rolled back by the step
        return node

    monkeypatch.setattr(placement, "lock_node", taken)
    with session_scope(settings) as db, pytest.raises(NoCapacity, match="too many launches at once; try again"):
        broker.launch(db, db.merge(user(settings, world, "alice")), _request(world))
    assert len(tried) == launching.PLACE_RETRY.tries
    with session_scope(settings) as db:
        row = db.scalar(select(DesktopSession).order_by(DesktopSession.id.desc()))
        assert (row.state, row.message) == ("failed", "could not reserve a place: too many launches at once")


def test_the_retry_policy_rolls_back_and_pauses_on_database_conflicts(settings):
    pauses, attempts = [], []

    class Db:
        rolled_back = 0

        def rollback(self):
            Db.rolled_back += 1

    def attempt(n):
        attempts.append(n)
        if n < 2:
            raise OperationalError("select", {}, Exception("database is locked"))
        return launching.AGAIN if n == 2 else "done"

    policy = launching.Retry(5, lambda n: pauses.append(n) or 0)
    assert launching.retried(Db(), policy, attempt) == "done"
    assert attempts == [0, 1, 2, 3] and pauses == [0, 1] and Db.rolled_back == 2
    assert launching.retried(Db(), launching.Retry(3, lambda n: 0), lambda n: launching.AGAIN) is None


class Side(LocalNodeSide):
    """The local node side, recording each call by node; ``unreachable`` names nodes whose prepare fails so."""

    def __init__(self, run_dir, unreachable=(), ready=always_ready, fail=None):
        super().__init__(run_dir, ready)
        self.calls, self.unreachable, self.fail = [], set(unreachable), fail

    def prepare(self, node, key, uid, gid, password, view_password, hostname, data_path=""):
        self.calls.append(("prepare", node.name))
        if node.name in self.unreachable:
            raise NodeUnreachable(f"node {node.name} does not answer")
        if self.fail:
            raise self.fail
        return super().prepare(node, key, uid, gid, password, view_password, hostname)

    def ready(self, node, folder, uid, container_id):
        self.calls.append(("ready", node.name))
        return super().ready(node, folder, uid, container_id)

    def release(self, node, socket):
        self.calls.append(("release", node.name if node else None))
        super().release(node, socket)


def test_prepare_failure_fails_the_session_with_its_reason(env):
    settings, world, _ = env
    side = Side(settings.run_dir, fail=BackendError("no room for the folder"))
    broker = type(env[2])(settings, env[2].backend, node_sides=lambda node: side)
    with session_scope(settings) as db, pytest.raises(BackendError, match="^no room for the folder$"):
        broker.launch(db, db.merge(user(settings, world, "alice")), _request(world))
    with session_scope(settings) as db:
        row = db.scalar(select(DesktopSession).order_by(DesktopSession.id.desc()))
        assert (row.state, row.message) == ("failed", "the desktop could not be started: no room for the folder")
    assert broker.backend.created == {}


def test_an_unreachable_node_side_marks_the_node_down_and_the_session_is_placed_elsewhere(env):
    settings, world, fake = env
    side = Side(settings.run_dir, unreachable={"n1"})
    sides = {}
    broker = type(fake)(settings, fake.backend, node_sides=lambda node: sides.setdefault(node.name, side))
    with session_scope(settings) as db:
        desktop = broker.launch(db, db.merge(user(settings, world, "alice")), _request(world))
        sid = desktop.id
    assert _committed(settings, sid)["state"] == "running" and _committed(settings, sid)["node"] == "n2"
    assert _node_state(settings, "n1") == "down"
    assert side.calls[:3] == [("prepare", "n1"), ("prepare", "n2"), ("ready", "n2")]
    assert set(sides) == {"n1", "n2"}  # the node side is asked for per node
    with session_scope(settings) as db:
        broker.stop_session(db, db.get(DesktopSession, sid), "done")
    assert side.calls[-1] == ("release", "n2")


def test_start_failure_fails_the_session_and_an_unreachable_engine_moves_it(env, monkeypatch):
    settings, world, broker = env
    broker.backend.down.add("n1")  # its engine does not answer: ensure_image raises NodeUnreachable
    with session_scope(settings) as db:
        first = broker.launch(db, db.merge(user(settings, world, "alice")), _request(world)).id
    assert _committed(settings, first)["node"] == "n2" and _node_state(settings, "n1") == "down"

    def refuse(node, spec):
        raise BackendError("image has no entrypoint")

    monkeypatch.setattr(broker.backend, "start", refuse)
    with session_scope(settings) as db, pytest.raises(BackendError, match="^image has no entrypoint$"):
        broker.launch(db, db.merge(user(settings, world, "alice")), _request(world))
    with session_scope(settings) as db:
        row = db.scalar(select(DesktopSession).order_by(DesktopSession.id.desc()))
        assert (row.state, row.message) == ("failed", "the desktop could not be started: image has no entrypoint")
        assert row.vnc_socket and not (settings.run_dir / row.vnc_socket).parent.parent.exists()  # folder released


def test_await_failure_stops_the_desktop_and_fails_the_session(env, make_broker, caplog):
    settings, world, _ = env

    def foreign(folder, uid, container_id):
        raise ForeignServer("something else answers")

    broker = make_broker(settings, ready=None)
    broker = type(broker)(settings, broker.backend, ready=foreign)
    with session_scope(settings) as db, pytest.raises(BackendError) as raised:
        broker.launch(db, db.merge(user(settings, world, "alice")), _request(world))
    with session_scope(settings) as db:
        row = db.scalar(select(DesktopSession).order_by(DesktopSession.id.desc()))
        assert str(raised.value) == f"session {row.id} failed to start: something else answers"
        assert (row.state, row.message) == ("failed", "something else answers")
    assert broker.backend.created and broker.backend.running == {}  # started, then stopped
    assert any(record.getMessage() == "session.foreign_server" for record in caplog.records)


def test_await_times_out_with_the_reason(env, make_broker):
    settings, world, _ = env
    settings = settings.replace(session_start_timeout_s=1)
    broker = make_broker(settings, ready=None)
    broker = type(broker)(settings, broker.backend, ready=lambda folder, uid, cid: False)
    with session_scope(settings) as db, pytest.raises(BackendError, match="did not answer within 1 s"):
        broker.launch(db, db.merge(user(settings, world, "alice")), _request(world))
    with session_scope(settings) as db:
        row = db.scalar(select(DesktopSession).order_by(DesktopSession.id.desc()))
        assert row.state == "failed" and row.message == "the desktop did not answer within 1 s"


def test_a_background_launch_returns_the_reserved_session_at_once_and_the_runner_finishes_it(env, monkeypatch):
    settings, world, broker = env
    go, started = threading.Event(), threading.Event()
    real_start = broker.backend.start

    def slow_start(node, spec):
        started.set()
        assert go.wait(10)
        return real_start(node, spec)

    monkeypatch.setattr(broker.backend, "start", slow_start)
    with session_scope(settings) as db:
        sid = broker.launch_in_background(db, db.merge(user(settings, world, "alice")), _request(world))
    assert started.wait(10)
    assert _committed(settings, sid)["state"] == "starting" and _committed(settings, sid)["backend_state"] == {}
    go.set()
    deadline = time.monotonic() + 10
    while _committed(settings, sid)["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_background_launch_refused_at_reserve_raises_and_one_failing_later_ends_failed(env, monkeypatch):
    settings, world, broker = env
    with session_scope(settings) as db, pytest.raises(Unsatisfiable):
        broker.launch_in_background(db, db.merge(user(settings, world, "alice")), _request(world, gpu=True))

    def refuse(node, spec):
        raise BackendError("image has no entrypoint")

    monkeypatch.setattr(broker.backend, "start", refuse)
    with session_scope(settings) as db:
        sid = broker.launch_in_background(db, db.merge(user(settings, world, "alice")), _request(world))
    broker.close()  # waits for the launch under way
    assert _committed(settings, sid)["state"] == "failed"
    assert _committed(settings, sid)["message"] == "the desktop could not be started: image has no entrypoint"
