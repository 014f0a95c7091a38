"""The Swarm backend on a real swarm: a dockerd of its own made a one-node swarm manager (advertise
address on loopback). Desktops are launched as services pinned to the node by its label and drawn
over VNC on their session's socket, with the Docker backend's isolation (only ``lo``, no-new-privileges
from the entrypoint, the locked and proved socket, no password in the environment); they are stopped;
a restarted broker re-adopts them; orphaned services are removed; a task that dies makes its session
lost; the probe (ci's smoke gate) runs through the same backend."""

from __future__ import annotations

import time
from pathlib import Path

import docker
import pytest
from sqlalchemy import select

from asci import rfb
from asci.db import session_scope, utcnow
from broker import probe_desktop, register_node, rundir, service
from broker.backends.swarm import NODE_LABEL, SwarmBackend
from broker.models import DesktopSession, Node
from broker.reconcile import reconcile
from tests.support import add_members, make_world, remove_sessions
from web import create_app

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def swarm_image(swarm_node, desktop_image):
    """The desktop image pulled into the swarm node's engine once (what ``ensure_image`` does at a launch)."""
    backend = SwarmBackend(swarm_node.url)
    from broker.backends.base import NodeRef

    assert backend.ensure_image(NodeRef("swarm1", swarm_node.url), desktop_image) is True
    backend.close()
    return desktop_image


@pytest.fixture
def swarm(pg_settings, swarm_node, swarm_image, tmp_path, make_broker):
    settings = pg_settings.replace(broker_backend="swarm", docker_hosts=(swarm_node.url,),
                                   broker_instance=f"sw{tmp_path.name[-12:].lower().replace('_', '-')}"[:40],
                                   session_start_timeout_s=90)
    # the experiment's data: <data root>/world-*/run1.h5
    world = make_world(settings, [], image=swarm_image.split("@")[0] + ":v1", digest=swarm_image.split("@")[1])
    add_members(settings, world, 5)
    broker = make_broker(settings, service.make_backend(settings))
    with session_scope(settings) as db:
        register_node(settings, db, "swarm1", swarm_node.url, backend=broker.backend)
    client = docker.DockerClient(base_url=swarm_node.url, version="1.41", timeout=60)
    yield settings, world, broker, create_app(settings, broker=broker).test_client(), client
    for svc in client.services.list(filters={"label": f"asci.broker={settings.broker_instance}"}):
        svc.remove()
    time.sleep(1)
    remove_sessions(swarm_node.url, settings.broker_instance, world["names"].values())
    client.close()
    broker.backend.close()


def _auth(world, who):
    return {"Authorization": f"Bearer {world['tokens'][who]}"}


def _launch(api, world, who):
    reply = api.post("/api/sessions", json={"environment": world["env"], "experiment": world["e1"], "cpus": 1,
                                            "memory": "1g"}, headers=_auth(world, who))
    assert reply.status_code == 201, reply.json
    return reply.json


def _row(settings, session_id) -> DesktopSession:
    with session_scope(settings) as db:
        row = db.get(DesktopSession, session_id)
        row.node  # noqa: B018 - loaded before the session closes
        db.expunge_all()
        return row


def _task(client, service_id) -> dict:
    tasks = client.services.get(service_id).tasks()
    return max(tasks, key=lambda task: task["CreatedAt"])


def _gone(client, service_id, timeout=30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.services.get(service_id)
        except docker.errors.NotFound:
            return
        time.sleep(0.2)
    raise AssertionError(f"service {service_id} still there after {timeout} s")


def test_a_desktop_service_is_drawn_isolated_and_stopped(swarm, swarm_node, artifacts_dir):
    settings, world, broker, api, client = swarm
    with session_scope(settings) as db:
        node = db.scalar(select(Node).where(Node.name == "swarm1"))
        info = client.info()
        assert (node.cpus, node.memory_bytes, node.capacity_source) == (info["NCPU"], info["MemTotal"], "engine")
    [swarm_node_attrs] = client.nodes.list()
    assert swarm_node_attrs.attrs["Spec"]["Labels"][NODE_LABEL] == "swarm1"
    body = _launch(api, world, "member00")
    assert body["node"] == "swarm1" and body["state"] == "running"
    row = _row(settings, body["id"])
    # VNC only on the session's own socket, in its folder under the run folder (shared with the node)
    folder = rundir.SessionDir(Path(row.vnc_socket).parent.parent)
    assert folder.path == settings.run_dir / f"{settings.broker_instance}-s{body['id']}"
    frame = rfb.wait_for_desktop(row.vnc_socket, row.vnc_password, timeout=60)
    (artifacts_dir / "swarm-desktop.png").write_bytes(frame.to_png())
    service_id = row.backend_state["service_id"]
    spec = client.services.get(service_id).attrs["Spec"]
    assert spec["TaskTemplate"]["Placement"]["Constraints"] == [f"node.labels.{NODE_LABEL} == swarm1"]
    assert spec["Labels"]["asci.session"] == str(body["id"])
    # no network, no virtual IP, no published port
    assert not spec["TaskTemplate"].get("Networks") and spec["EndpointSpec"] == {"Mode": "dnsrr"}
    task = _task(client, service_id)
    assert not task.get("NetworksAttachments")
    container = client.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
    host = container.attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and host["Init"] is True and host["PidsLimit"] == settings.session_pids_limit
    assert host["Memory"] == 1 << 30 and host["NanoCpus"] == 10**9
    uid = settings.session_uid_base + world["ids"]["member00"]
    config = container.attrs["Config"]
    assert config["User"] == f"{uid}:{uid}" and config["Image"].endswith(body["image_digest"])
    assert not [item for item in config["Env"] if "PASSWORD" in item.split("=")[0]]
    assert "NVIDIA_VISIBLE_DEVICES=void" in config["Env"]
    mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
    assert mounts["/run/asci/vnc"]["Source"] == str(folder.vnc) and mounts["/run/asci/secret"]["RW"] is False
    assert mounts["/etc/hosts"]["Source"] == str(folder.hosts)
    # the broker locked the socket folder and proved the server: the task's own Xvnc, as the session's uid
    assert rundir.is_locked(folder) and rundir.checked_socket(row.vnc_socket) == row.vnc_socket
    xvnc = rundir.prove(folder, uid, container.id)
    assert xvnc > 0 and rundir.container_of(xvnc) == container.id
    # no-new-privileges, which a service cannot ask the engine for, set by the desktop's entrypoint: every
    # process of the desktop carries it (only the init, docker-init, started before the entrypoint, does not)
    processes = container.top(ps_args="-eo pid,comm")["Processes"]
    flags = {int(pid): (comm, _no_new_privs(int(pid))) for pid, comm in processes}
    # (a short-lived process of the session's start-up that ended while being read is left out)
    desktop = {pid: flag for pid, (comm, flag) in flags.items()
               if comm not in ("docker-init", "init", "tini") and flag is not None}
    assert xvnc in desktop and len(desktop) >= 3, flags
    assert set(desktop.values()) == {1}, flags
    print(f"swarm desktop processes and NoNewPrivs: {sorted(flags.values())}; MemorySwap {host.get('MemorySwap')}")
    # the home volume belongs to the session's user (chowned on the node's engine before the service)
    code, output = broker.backend.exec(_ref(settings), row.backend_state,
                                       ["sh", "-c", 'id -u; stat -c %u "$HOME"; ls /data; touch /data/x'],
                                       f"{uid}:{uid}", {"HOME": f"/home/{world['names']['member00']}"})
    lines = output.split()
    assert lines[:3] == [str(uid), str(uid), "run1.h5"], output
    assert "Read-only file system" in output
    # inside: only a loopback interface (no network on a node whose dockerd has no default bridge),
    # /dev/shm a tmpfs of the Docker backend's size, and the password folder read-only
    code, output = broker.backend.exec(_ref(settings), row.backend_state,
                                       ["sh", "-c", "ls /sys/class/net; grep ' /dev/shm ' /proc/mounts; "
                                                    "touch /run/asci/secret/x 2>&1 || true"],
                                       f"{uid}:{uid}", {})
    lines = output.splitlines()
    assert lines[0] == "lo" and lines[1].startswith("tmpfs /dev/shm tmpfs"), output
    assert "size=262144k" in lines[1], output  # a quarter of the 1 GiB memory limit
    assert "Read-only file system" in output or "Permission denied" in output, output
    stopped = api.delete(f"/api/sessions/{body['id']}", headers=_auth(world, "member00")).json
    assert stopped["state"] == "stopped"
    _gone(client, service_id)
    assert not folder.path.exists(), "the ended session's folder must be removed"


def _no_new_privs(pid: int) -> int | None:
    """The process's NoNewPrivs flag; None when it has ended."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in status.splitlines():
        if line.startswith("NoNewPrivs:"):
            return int(line.split()[1])
    raise AssertionError(f"no NoNewPrivs in /proc/{pid}/status")


def _ref(settings):
    from broker.backends.base import NodeRef

    with session_scope(settings) as db:
        return NodeRef.of(db.scalar(select(Node).where(Node.name == "swarm1")))


def test_a_restarted_broker_readopts_and_removes_orphans(swarm):
    settings, world, broker, api, client = swarm
    kept = _launch(api, world, "member01")
    orphan = _launch(api, world, "member02")
    with session_scope(settings) as db:
        kept_row = db.get(DesktopSession, kept["id"])
        kept_state = dict(kept_row.backend_state)
        # the broker dies before it recorded the service; another session ended but its service stayed
        kept_row.state, kept_row.backend_state = "starting", {}
        kept_row.created_at = utcnow().replace(year=utcnow().year - 1)
        orphan_row = db.get(DesktopSession, orphan["id"])
        orphan_service = orphan_row.backend_state["service_id"]
        orphan_row.state, orphan_row.stopped_at = "stopped", utcnow()
    restarted = service.Broker(settings, SwarmBackend(settings.docker_hosts[0]))
    try:
        with session_scope(settings) as db:
            summary = reconcile(restarted, db)
            assert summary["adopted"] == 1 and summary["removed"] == 1, summary
            row = db.get(DesktopSession, kept["id"])
            assert row.state == "running" and row.backend_state == kept_state
        _gone(client, orphan_service)
        row = _row(settings, kept["id"])
        rfb.wait_for_desktop(row.vnc_socket, row.vnc_password, timeout=60)  # still the same desktop
        with session_scope(settings) as db:
            restarted.stop(db, kept["id"], db.merge(_user(settings, world, "member01")))
        _gone(client, kept_state["service_id"])
    finally:
        restarted.backend.close()


def _user(settings, world, who):
    from tests.support import user_of

    return user_of(settings, world, who)


def test_a_task_that_dies_makes_its_session_lost(swarm):
    settings, world, broker, api, client = swarm
    body = _launch(api, world, "member03")
    service_id = _row(settings, body["id"]).backend_state["service_id"]
    task = _task(client, service_id)
    client.containers.get(task["Status"]["ContainerStatus"]["ContainerID"]).kill()
    deadline = time.monotonic() + 15
    while _task(client, service_id)["Status"]["State"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    dead = _task(client, service_id)["Status"]
    assert dead["State"] == "failed" and "137" in dead["Err"]
    assert len(client.services.get(service_id).tasks()) == 1  # restart policy none: no fresh desktop
    with session_scope(settings) as db:
        summary = reconcile(broker, db)
        assert summary["lost"] == 1
        row = db.get(DesktopSession, body["id"])
        assert row.state == "lost" and "exited" in row.message
    _gone(client, service_id)
    assert api.get(f"/api/sessions/{body['id']}", headers=_auth(world, "member03")).json["state"] == "lost"


def test_the_smoke_gates_probe_runs_as_a_swarm_service(swarm, swarm_image):
    settings, world, broker, api, client = swarm
    with probe_desktop(settings, swarm_image, "swarm-probe") as probe:
        services = client.services.list(filters={"label": "asci.probe=1"})
        assert len(services) == 1
        frame = rfb.wait_for_desktop(probe.socket, probe.password, timeout=90)
        assert frame.width > 0
        code, output = probe.run("id -u")
        assert code == 0 and output.strip() == "65000"
    assert client.services.list(filters={"label": "asci.probe=1"}) == []
