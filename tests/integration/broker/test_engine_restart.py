"""Drill: the node's Docker engine restarts (an upgrade) while a desktop runs. Started with the flags
``.ci/provision`` gives dockerd (``--live-restore`` among them), the desktop keeps running, the viewer
connected through it keeps its picture and a new viewer connects with a fresh token, and reconciliation
neither loses nor duplicates the session. The daemon is one of the test's own (``tests/daemons.py``): the shared one is never touched."""

from __future__ import annotations

import shlex

import pytest
from sqlalchemy import select

from asci import rfb
from asci.config import PROJECT_ROOT
from asci.db import session_scope
from broker.backends.base import NodeRef
from broker.backends.docker import DockerBackend
from broker.models import DesktopSession
from broker.reconcile import reconcile
from tests.daemons import Dockerd
from tests.integration.web.test_websockify_tokens import _open
from tests.support import free_port, make_world, remove_sessions
from tests.support import user_of as user
from web import vnc_proxy, vnc_tokens

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]


def provision_dockerd_flags() -> list[str]:
    """The flags ``.ci/provision`` starts dockerd with (the command and its continuation lines)."""
    lines = (PROJECT_ROOT / ".ci" / "provision").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "nohup dockerd" in line)
    command = []
    for line in lines[start:]:
        command += shlex.split(line.rstrip("\\").split(">", 1)[0])
        if not line.rstrip().endswith("\\"):
            break
    return [word for word in command if word.startswith("--")]


@pytest.fixture
def live_restore_node(tmp_path_factory, pushed_image):
    """A dockerd of the test's own started as set-up starts the node's (``--live-restore`` when set-up
    gives it), holding the desktop image."""
    flags = provision_dockerd_flags()
    assert "--bridge=none" in flags, flags  # the parse found set-up's dockerd command
    daemon = Dockerd(tmp_path_factory.mktemp("dockerd-lr"), name="live-restore",
                     live_restore="--live-restore" in flags)
    daemon.start()
    try:
        reference, digest = pushed_image
        backend = DockerBackend()
        backend.ensure_image(NodeRef("live-restore", daemon.url), f"{reference.rsplit(':', 1)[0]}@{digest}")
        backend.close()
        yield daemon
    finally:
        if daemon.process and daemon.process.poll() is None:
            daemon.remove_containers()
        daemon.cleanup()


def running_containers(daemon: Dockerd, session_id: int) -> list[str]:
    client = daemon.client()
    try:
        return [c.id for c in client.containers.list(filters={"label": f"asci.session={session_id}"})]
    finally:
        client.close()


def test_a_desktop_survives_a_restart_of_its_engine(settings, live_restore_node, pushed_image, make_broker,
                                                    tmp_path, artifacts_dir):
    daemon = live_restore_node
    reference, digest = pushed_image
    settings = settings.replace(broker_instance=f"lr{tmp_path.name[-12:].lower().replace('_', '-')}",
                                session_start_timeout_s=90, websockify_port=free_port(30000, 40000))
    world = make_world(settings, [dict(name="node-lr", docker_url=daemon.url, cpus=4, memory_bytes=8 << 30)],
                       image=reference, digest=digest)
    broker = make_broker(settings, DockerBackend())
    proxy = vnc_proxy.start(settings, log_path=tmp_path / "websockify.log")
    try:
        with session_scope(settings) as db:
            row = broker.launch(db, db.merge(user(settings, world, "alice")), world["env"], "current", world["e1"])
            session_id, socket_path, password = row.id, row.vnc_socket, row.vnc_password
        first = rfb.wait_for_desktop(socket_path, password, timeout=60)
        containers = running_containers(daemon, session_id)
        assert len(containers) == 1
        # a viewer stays connected across the restart (the VNC socket is a bind mount: no engine in the way)
        viewer, width, height, _ = rfb._open(socket_path, password, 10)
        with viewer:
            took = daemon.stop()
            assert took is not None and not daemon.answers()
            assert running_containers_pids(containers[0]), "the desktop stopped with its engine"
            daemon.start()
            assert running_containers(daemon, session_id) == containers  # the same container, still running
            rfb._request(viewer, width, height, incremental=False)
            pixels = bytearray(width * height * 4)
            rfb._read_update(viewer, width, height, pixels)
            assert rfb.Framebuffer(width, height, "", bytes(pixels)).is_drawn()
        # a new viewer (the browser's reconnect: a fresh token through websockify) gets the desktop again
        token = vnc_tokens.make_token(settings, world["ids"]["alice"], session_id)
        assert _open(settings, token).startswith(b"RFB ")
        again = rfb.wait_for_desktop(socket_path, password, timeout=30)
        assert (again.width, again.height) == (first.width, first.height)
        (artifacts_dir / "after-engine-restart.png").write_bytes(again.to_png())
        # reconciliation after the restart: the session is neither lost nor started twice
        for _ in range(2):
            with session_scope(settings) as db:
                summary = reconcile(broker, db)
                assert summary["lost"] == 0 and summary["removed"] == 0 and summary["nodes_down"] == 0, summary
                rows = db.scalars(select(DesktopSession)).all()
                assert [(r.id, r.state) for r in rows] == [(session_id, "running")]
        assert running_containers(daemon, session_id) == containers
    finally:
        vnc_proxy.stop(proxy)
        remove_sessions(daemon.url, settings.broker_instance, world["names"].values())
        broker.backend.close()
        print((tmp_path / "websockify.log").read_text(errors="replace")[-2000:])


def running_containers_pids(container_id: str) -> list[int]:
    """Processes of the container still alive while its engine is down (found through its cgroup)."""
    import os
    from pathlib import Path

    alive = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if container_id in Path(f"/proc/{entry}/cgroup").read_text():
                    alive.append(int(entry))
            except OSError:
                continue
    return alive
