"""Issue 11's proof, on the real engine, web app, websockify, registry and PostgreSQL: two users' desktops
on one node; from inside desktop A, as A's user, nothing of B or of the node answers (B's VNC socket,
the registry, the web app, websockify, PostgreSQL, the Docker socket); A's own viewer works through
websockify; a squatter holding the old session ports captures no viewer (the hijack regression); a
desktop that swaps its socket for a symlink to another session's is refused before it could serve."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest
from docker.types import Mount

from asci import rfb
from asci.db import session_scope
from broker import ForeignServer, rundir, service
from broker.models import DesktopSession
from tests.support import bind_unix, free_port, make_world, remove_sessions, serving, websocket_bridge
from tests.support import user_of as user
from web import create_app, vnc_proxy, vnc_tokens

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.postgres, pytest.mark.slow]
MAIN = "unix:///var/run/docker.sock"
OLD_SESSION_PORTS = range(5901, 6000)  # where desktops listened (host networking) before: a squatter's target

# Run inside a desktop (and on the host as a control): connect to each target, report what happened.
PROBE = r"""
import json, socket, sys
out = {}
for name, kind, where in json.loads(sys.argv[1]):
    try:
        if kind == "unix":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(3)
            s.connect(where)
        else:
            s = socket.create_connection(tuple(where), timeout=3)
        s.close()
        out[name] = "CONNECTED"
    except Exception as exc:
        out[name] = type(exc).__name__ + ": " + str(exc)
print(json.dumps(out))
"""


@pytest.fixture
def platform(pg_settings, pushed_image, tmp_path, make_broker):
    """Web app, websockify and the broker on the local daemon; alice (uid 4242) and bob."""
    from broker.backends.docker import DockerBackend

    reference, digest = pushed_image
    settings = pg_settings.replace(broker_instance=f"iso{uuid.uuid4().hex[:8]}", session_start_timeout_s=90,
                                   websockify_port=free_port(21000, 29000), log_format="text")
    world = make_world(settings, [dict(name="node1", docker_url=MAIN, cpus=4, memory_bytes=8 << 30)],
                       image=reference, digest=digest)  # data under the settings' experiment data root
    broker = make_broker(settings, DockerBackend())
    proxy = vnc_proxy.start(settings, log_path=tmp_path / "websockify.log")
    try:
        with serving(create_app(settings, broker=broker)) as url:
            yield settings, world, broker, url
    finally:
        vnc_proxy.stop(proxy)
        remove_sessions(MAIN, settings.broker_instance, world["names"].values())
        broker.backend.close()
        print((tmp_path / "websockify.log").read_text(errors="replace")[-2000:])


def _launch(broker, world, who: str) -> DesktopSession:
    settings = broker.settings
    with session_scope(settings) as db:
        desktop = broker.launch(db, db.merge(user(settings, world, who)), world["env"], "current",
                                world["e1" if who == "alice" else "e2"])
        db.expunge(desktop)
        return desktop


def _probe_inside(docker_client, desktop: DesktopSession, uid_gid: str, targets: list) -> dict:
    container = docker_client.containers.get(desktop.backend_state["container_id"])
    exit_code, output = container.exec_run(["python3", "-c", PROBE, json.dumps(targets)], user=uid_gid)
    assert exit_code == 0, output
    return json.loads(output)


def _probe_on_the_host(targets: list) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(targets)], capture_output=True, text=True,
                            check=True, timeout=60)
    return json.loads(result.stdout)


def _host_addresses() -> list[str]:
    output = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
    return [line.split()[3].split("/")[0] for line in output.splitlines() if " lo " not in line]


class Squatter:
    """A co-tenant's trap on the node: listens on every free port it can in a range and greets as VNC."""

    def __init__(self, ports):
        self.listeners, self.accepted = [], 0
        for port in ports:
            try:
                self.listeners.append(socket.create_server(("127.0.0.1", port)))
            except OSError:
                continue
        for listener in self.listeners:
            listener.settimeout(0.05)

    def poll(self) -> int:
        for listener in self.listeners:
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            self.accepted += 1
            connection.sendall(b"RFB 003.008\n")
            connection.close()
        return self.accepted

    def close(self) -> None:
        for listener in self.listeners:
            listener.close()


def test_a_desktop_reaches_neither_another_desktop_nor_the_nodes_services(platform, docker_client, tmp_path,
                                                                          artifacts_dir):
    settings, world, broker, web_url = platform
    squatter = Squatter(OLD_SESSION_PORTS)  # on the node, before any desktop starts: the old hijack's set-up
    assert len(squatter.listeners) > 50, "the squatter should hold most of the old session ports"
    try:
        a = _launch(broker, world, "alice")
        # inside A, as A's user: squat A's own loopback ports too (harmless now: its namespace is its own)
        container_a = docker_client.containers.get(a.backend_state["container_id"])
        container_a.exec_run(["python3", "-c", "import socket, time\nl = [socket.create_server(('127.0.0.1', p)) "
                              "for p in range(5901, 6000)]\ntime.sleep(600)"], user="4242:4242", detach=True)
        b = _launch(broker, world, "bob")
        assert squatter.poll() == 0, "the broker connected to a squatted port"

        web_port = int(web_url.rsplit(":", 1)[1])
        services = {"registry": 5000, "web app": web_port, "websockify": settings.websockify_port,
                    "postgresql": 5432}
        targets = [[f"{name} 127.0.0.1:{port}", "tcp", ["127.0.0.1", port]] for name, port in services.items()]
        targets += [[f"{name} {address}:{port}", "tcp", [address, port]]
                    for address in _host_addresses() for name, port in services.items()]
        targets += [["docker daemon tcp 127.0.0.1:2375", "tcp", ["127.0.0.1", 2375]],
                    ["docker daemon tls 127.0.0.1:2376", "tcp", ["127.0.0.1", 2376]],
                    ["docker socket /var/run/docker.sock", "unix", "/var/run/docker.sock"],
                    ["docker socket /run/docker.sock", "unix", "/run/docker.sock"],
                    ["B's VNC socket (host path)", "unix", b.vnc_socket],
                    ["A's own VNC socket (locked: the platform's alone)", "unix", rundir.CONTAINER_SOCKET],
                    ["X server of the namespace (abstract)", "unix", "\0/tmp/.X11-unix/X1"]]
        control = _probe_on_the_host(targets[:len(services)])
        assert set(control.values()) == {"CONNECTED"}, f"the node's services must be up for this to prove anything: " \
                                                       f"{control}"
        from_a = _probe_inside(docker_client, a, "4242:4242", targets)
        (artifacts_dir / "from-inside-desktop-a.json").write_text(json.dumps(from_a, indent=2))
        reached = {name: outcome for name, outcome in from_a.items() if outcome == "CONNECTED"}
        assert reached == {}, f"desktop A reached {reached}"
        assert len(from_a) == len(targets)
        interfaces = container_a.exec_run(["cat", "/proc/net/dev"], user="4242:4242").output.decode()
        assert [line.split(":")[0].strip() for line in interfaces.splitlines()[2:]] == ["lo"]

        # A's own viewer, through websockify with A's token: authenticates and shows A's drawn desktop
        token = lambda: vnc_tokens.make_token(settings, world["ids"]["alice"], a.id)  # noqa: E731 - fresh each time
        with websocket_bridge(settings.websockify_port, token, tmp_path / "viewer-a.sock") as viewer:
            frame = rfb.wait_for_desktop(viewer, a.vnc_password, timeout=90)
        (artifacts_dir / "desktop-a-through-websockify.png").write_bytes(frame.to_png())
        assert (frame.width, frame.height) == (1280, 800) and frame.is_drawn()
        # B's viewer reaches B's desktop, not the squatter (whose greeting could not pass VNC authentication)
        token = lambda: vnc_tokens.make_token(settings, world["ids"]["bob"], b.id)  # noqa: E731
        with websocket_bridge(settings.websockify_port, token, tmp_path / "viewer-b.sock") as viewer:
            assert rfb.wait_for_desktop(viewer, b.vnc_password, timeout=90).is_drawn()
            with pytest.raises(rfb.RFBError):  # A's password opens nothing of B's
                rfb.capture(viewer, a.vnc_password)
        assert squatter.poll() == 0, "a viewer was sent to the squatter"
        # and A's token never opens B's desktop (nor a forged one)
        forged = vnc_tokens.make_token(settings, world["ids"]["alice"], b.id)
        assert vnc_tokens.resolve(settings, broker, forged) is None
    finally:
        squatter.close()


def test_a_socket_swapped_for_another_sessions_is_refused(platform, docker_client, base_image, tmp_path):
    """Before the broker locks its folder a desktop could replace its socket with a symlink to another
    session's socket, which root would follow: the lock refuses it, and so would websockify's check."""
    settings, world, broker, _ = platform
    b = _launch(broker, world, "bob")
    folder = rundir.prepare(settings.run_dir, f"{settings.broker_instance}-s999999", 4343, 4343, "attacker", "")
    mounts = [Mount(target=rundir.CONTAINER_VNC_DIR, source=str(folder.vnc), type="bind"),
              Mount(target=rundir.CONTAINER_SECRET_DIR, source=str(folder.secret), type="bind", read_only=True)]
    swapper = docker_client.containers.run(
        base_image, entrypoint=["sh", "-c", f"ln -s {b.vnc_socket} /run/asci/vnc/vnc.sock && sleep 600"],
        user="4343:4343", network_disabled=True, cap_drop=["ALL"], mounts=mounts, detach=True,
        labels={"asci.test": "1"})
    try:
        deadline = time.monotonic() + 30
        while not os.path.lexists(folder.socket):
            assert time.monotonic() < deadline, swapper.logs().decode(errors="replace")
            time.sleep(0.05)
        assert os.path.islink(folder.socket)
        with pytest.raises(ForeignServer, match="symlink"):
            rundir.ready(folder, 4343, lambda: swapper.id)
        assert rundir.checked_socket(folder.socket) is None
        # a real socket of the right uid, served from outside the swapper's container, fails the proof
        os.unlink(folder.socket)
        outsider = bind_unix(folder.socket)  # this test process: not in the swapper's container, not its uid
        os.chown(folder.socket, 4343, 4343)
        with pytest.raises(ForeignServer, match="not by the session's desktop"):
            rundir.ready(folder, 4343, lambda: swapper.id)
        outsider.close()
    finally:
        swapper.remove(force=True)
        rundir.remove(folder)


def test_a_facility_network_gives_desktops_a_network_but_never_the_nodes(platform, docker_client, artifacts_dir):
    """session_network names a Docker network the facility made for desktops (here an internal bridge the
    test creates): the desktop is attached to it alone, still reaches none of the node's services, and
    its VNC is still only the session's socket."""
    settings, world, broker, web_url = platform
    network = docker_client.networks.create(f"asci-test-net-{uuid.uuid4().hex[:8]}", driver="bridge", internal=True,
                                            labels={"asci.test": "1"})
    try:
        settings = settings.replace(session_network=network.name)
        a = _launch(service.Broker(settings, broker.backend), world, "alice")
        container = docker_client.containers.get(a.backend_state["container_id"])
        assert list(container.attrs["NetworkSettings"]["Networks"]) == [network.name]
        assert container.attrs["HostConfig"]["NetworkMode"] == network.name
        gateway = network.attrs["IPAM"]["Config"][0].get("Gateway") if network.attrs["IPAM"]["Config"] else None
        network.reload()
        gateway = gateway or network.attrs["IPAM"]["Config"][0]["Gateway"]
        web_port = int(web_url.rsplit(":", 1)[1])
        targets = [[f"{name} {address}:{port}", "tcp", [address, port]]
                   for address in ("127.0.0.1", gateway, *_host_addresses())
                   for name, port in (("registry", 5000), ("web app", web_port),
                                      ("websockify", settings.websockify_port), ("postgresql", 5432))]
        targets.append(["docker socket", "unix", "/var/run/docker.sock"])
        from_a = _probe_inside(docker_client, a, "4242:4242", targets)
        (artifacts_dir / "from-inside-desktop-on-facility-network.json").write_text(json.dumps(from_a, indent=2))
        assert {name: outcome for name, outcome in from_a.items() if outcome == "CONNECTED"} == {}
        tcp = container.exec_run(["sh", "-c", "cat /proc/net/tcp /proc/net/tcp6"]).output.decode().splitlines()
        listening = [line.split()[1] for line in tcp if line.split()[3:4] == ["0A"]]
        # Docker's own DNS resolver for a user-defined network listens on 127.0.0.11; nothing of the desktop does
        assert [address for address in listening if not address.startswith("0B00007F:")] == [], listening
        assert rfb.wait_for_desktop(a.vnc_socket, a.vnc_password, timeout=90).is_drawn()
    finally:
        remove_sessions(MAIN, settings.broker_instance, [])
        network.remove()
