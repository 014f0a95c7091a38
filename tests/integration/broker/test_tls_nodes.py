"""A second Docker daemon reached over TCP with TLS (CA, server and client certificates made by the test):
registered with the capacity its engine reports, sessions spread across both nodes and drawn, clients
without the certificate refused; the node failure drill (stop the daemon: marked down within the
reconcile interval, its sessions lost, launches go to the healthy node; start it: the node returns)."""

from __future__ import annotations

import threading
import time

import docker
import pytest
import requests
from docker.tls import TLSConfig
from sqlalchemy import select

from asci import rfb
from asci.db import session_scope
from broker import register_node
from broker.backends.base import NodeRef
from broker.backends.docker import DockerBackend, docker_client
from broker.errors import NodeUnreachable
from broker.models import DesktopSession, Node
from broker.loops import reconcile_loop
from tests.integration.broker.conftest import tls_ref
from tests.support import add_members, make_world, remove_sessions
from web import create_app

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.postgres, pytest.mark.slow]
MAIN = "unix:///var/run/docker.sock"
INTERVAL = 2.0  # the reconcile interval of the drill


@pytest.fixture
def tls_cluster(pg_settings, node2, node2_image, pki, tmp_path, make_broker):
    """node1 = the main daemon (unix socket), node2 = the second daemon over TLS; both registered from
    their engines' capacity with the embedded defaults, spread placement, and 6 members of E1 (one desktop
    each: two desktops of one user on one node would share the home folder)."""
    settings = pg_settings.replace(broker_instance=f"tls{tmp_path.name[-12:].lower().replace('_', '-')}"[:40],
                                   session_start_timeout_s=90, placement_policy="spread",
                                   reconcile_interval_s=INTERVAL)
    world = make_world(settings, [], image=node2_image.split("@")[0] + ":v1", digest=node2_image.split("@")[1])
    add_members(settings, world, 6)
    broker = make_broker(settings, DockerBackend())
    good = pki["good"]
    with session_scope(settings) as db:
        register_node(settings, db, "node1", MAIN, backend=broker.backend)
        register_node(settings, db, "node2", node2.tcp_url, backend=broker.backend, tls_ca=str(good.ca), tls_cert=str(good.client_cert),
                      tls_key=str(good.client_key))
    yield settings, world, broker, create_app(settings, broker=broker).test_client()
    remove_sessions(MAIN, settings.broker_instance, world["names"].values())
    if node2.answers():
        remove_sessions(node2.url, settings.broker_instance, world["names"].values())
    broker.backend.close()


def _auth(world, who="alice"):
    return {"Authorization": f"Bearer {world['tokens'][who]}"}


def _launch(client, world, who):
    reply = client.post("/api/sessions", json={"environment": world["env"], "experiment": world["e1"], "cpus": 1,
                                               "memory": "1g"}, headers=_auth(world, who))
    assert reply.status_code == 201, reply.json
    return {**reply.json, "who": who}


def _node(settings, name) -> Node:
    with session_scope(settings) as db:
        row = db.scalar(select(Node).where(Node.name == name))
        db.expunge(row)
        return row


def test_a_tls_node_registers_from_its_engine_and_sessions_spread_across_both(tls_cluster, node2, artifacts_dir):
    settings, world, broker, client = tls_cluster
    info = docker.DockerClient(base_url=MAIN, version="1.41").info()
    for name in ("node1", "node2"):
        row = _node(settings, name)
        assert (row.cpus, row.memory_bytes, row.capacity_source) == (info["NCPU"], info["MemTotal"], "engine")
        assert (row.reserve_cpus, row.cpu_overcommit) == (settings.node_reserve_cpus, settings.node_cpu_overcommit)
    placed = [_launch(client, world, f"member0{number}") for number in range(4)]
    assert [s["node"] for s in placed] == ["node1", "node2", "node1", "node2"]  # spread over equal nodes
    on_node2 = placed[1]
    with session_scope(settings) as db:
        desktop = db.get(DesktopSession, on_node2["id"])
        socket_path, password = desktop.vnc_socket, desktop.vnc_password
        container_id = desktop.backend_state["container_id"]
    # the TLS node's desktop serves VNC on its session's socket (the node shares this machine's filesystem)
    frame = rfb.wait_for_desktop(socket_path, password, timeout=60)
    (artifacts_dir / "desktop-on-the-tls-node.png").write_bytes(frame.to_png())
    attrs = broker.backend.client(NodeRef.of(_node(settings, "node2"))).api.inspect_container(container_id)
    assert attrs["HostConfig"]["NanoCpus"] == 10**9 and attrs["HostConfig"]["Memory"] == 1 << 30
    assert attrs["HostConfig"]["CpuShares"] == 256 and attrs["HostConfig"]["MemoryReservation"] == 512 << 20
    assert attrs["Config"]["Labels"]["asci.session"] == str(on_node2["id"])
    assert attrs["Config"]["NetworkDisabled"] is True and attrs["HostConfig"]["SecurityOpt"] == ["no-new-privileges"]
    for session in placed:
        assert client.delete(f"/api/sessions/{session['id']}", headers=_auth(world, session["who"])
                             ).json["state"] == "stopped"


def test_clients_without_the_certificate_are_refused(node2, pki, monkeypatch):
    good, rogue = pki["good"], pki["rogue"]
    backend = DockerBackend(timeout=10)
    assert backend.capacity(tls_ref(node2, good)).cpus >= 1  # with the certificate: answers
    no_cert = NodeRef("nocert", node2.tcp_url, tls_ca=str(good.ca))
    other_ca = NodeRef("rogue", node2.tcp_url, str(good.ca), str(rogue.client_cert), str(rogue.client_key))
    wrong_server_ca = NodeRef("mitm", node2.tcp_url, str(rogue.ca), str(good.client_cert), str(good.client_key))
    for ref in (no_cert, other_ca, wrong_server_ca):
        with pytest.raises(NodeUnreachable, match="TLS connection failed"):
            backend.ping(ref)
    with pytest.raises(requests.exceptions.SSLError):
        docker_client(no_cert).api.ping()  # the handshake itself fails: the daemon wants a certificate
    plain = docker.DockerClient(base_url=node2.tcp_url, version="1.41", timeout=10)
    with pytest.raises(docker.errors.APIError, match="HTTP request to an HTTPS server"):
        plain.ping()
    # docker/docker-py#2433: the environment's CA bundle would replace ours; the broker's client ignores it
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    naive = docker.DockerClient(base_url=node2.tcp_url, version="1.41", timeout=10, tls=TLSConfig(
        client_cert=(str(good.client_cert), str(good.client_key)), ca_cert=str(good.ca), verify=True))
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        naive.ping()
    assert docker_client(tls_ref(node2, good)).ping() is True
    backend.close()


def test_register_refuses_a_node_whose_engine_refuses_us(pg_settings, node2, pki, make_broker):
    backend = make_broker(pg_settings, DockerBackend(timeout=10)).backend
    rogue = pki["rogue"]
    with pytest.raises(NodeUnreachable):
        with session_scope(pg_settings) as db:
            register_node(pg_settings, db, "rogue", node2.tcp_url, backend=backend, tls_ca=str(pki["good"].ca),
                          tls_cert=str(rogue.client_cert), tls_key=str(rogue.client_key))
    with session_scope(pg_settings) as db:
        assert db.scalar(select(Node).where(Node.name == "rogue")) is None


def _wait_for(condition, timeout: float, step: float = 0.05) -> float:
    """Seconds until ``condition()`` held (AssertionError after ``timeout``)."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(step)
    return time.monotonic() - began


def test_node_failure_drill(tls_cluster, node2, pki):
    settings, world, broker, client = tls_cluster
    sessions = [_launch(client, world, who) for who in ("member00", "member01")]
    lost = [s for s in sessions if s["node"] == "node2"]
    kept = [s for s in sessions if s["node"] == "node1"]
    assert len(lost) == len(kept) == 1
    stop = threading.Event()
    loop = threading.Thread(target=reconcile_loop, args=(broker, INTERVAL, stop), daemon=True)
    loop.start()
    try:
        # stop the TLS node's daemon
        node2.process.terminate()
        node2.process.wait(timeout=60)
        down_after = _wait_for(lambda: _node(settings, "node2").state == "down", timeout=INTERVAL + 3)
        print(f"node2 marked down {down_after:.2f} s after its daemon exited (interval {INTERVAL} s)")
        assert down_after <= INTERVAL + 1.5
        with session_scope(settings) as db:
            assert db.get(DesktopSession, lost[0]["id"]).state == "lost"
            # a stopping dockerd stops its containers first and answers meanwhile: a reconcile pass in that
            # window sees the desktop exit before the node stops answering (both end the session as lost)
            message = db.get(DesktopSession, lost[0]["id"]).message
            assert "stopped answering" in message or "its desktop exited" in message, message
            assert db.get(DesktopSession, kept[0]["id"]).state == "running"
        # new launches go to the healthy node
        again = _launch(client, world, "member02")
        assert again["node"] == "node1" and again["state"] == "running"
        # start it again: the node returns, its lost session's container is cleaned away
        node2.start()
        up_after = _wait_for(lambda: _node(settings, "node2").state == "up", timeout=INTERVAL + 3)
        print(f"node2 up again {up_after:.2f} s after its daemon answered")
        assert up_after <= INTERVAL + 1.5
        ref = tls_ref(node2, pki["good"])
        _wait_for(lambda: not DockerBackend().list_managed(ref, settings.broker_instance), timeout=INTERVAL + 3)
        third = _launch(client, world, "member03")
        assert third["node"] == "node2" and third["state"] == "running"  # spread: the empty node again
    finally:
        stop.set()
        loop.join(timeout=30)



def test_asci_node_add_reads_the_capacity_over_tls_and_flags_override_it(node2, pki, tmp_path):
    import json
    import os
    import subprocess
    import sys

    good, rogue = pki["good"], pki["rogue"]
    environment = dict(os.environ, ASCI_DATA_DIR=str(tmp_path))

    def asci(*argv):
        return subprocess.run([sys.executable, "-m", "asci", *argv], env=environment, capture_output=True, text=True)

    assert asci("db", "upgrade").returncode == 0
    added = asci("node", "add", "node2", "--url", node2.tcp_url, "--tls-ca", str(good.ca), "--tls-cert",
                 str(good.client_cert), "--tls-key", str(good.client_key), "--max-sessions", "12")
    assert added.returncode == 0, added.stderr
    info = docker.DockerClient(base_url=node2.url, version="1.41").info()
    assert f"{info['NCPU']} CPUs" in added.stdout and "(engine)" in added.stdout
    [row] = json.loads(asci("node", "list", "--json").stdout)
    assert (row["cpus"], row["memory_bytes"], row["capacity_source"]) == (info["NCPU"], info["MemTotal"], "engine")
    assert row["schedulable"]["cpus"] == (info["NCPU"] - 0.5) * 4 and row["max_sessions"] == 12
    assert "ports" not in row and "vnc_host" not in row
    manual = asci("node", "add", "node2", "--url", node2.tcp_url, "--tls-ca", str(good.ca), "--tls-cert",
                  str(good.client_cert), "--tls-key", str(good.client_key), "--cpus", "16", "--memory", "64g",
                  "--cpu-overcommit", "1")
    assert manual.returncode == 0, manual.stderr
    [row] = json.loads(asci("node", "list", "--json").stdout)
    assert (row["cpus"], row["memory_bytes"], row["capacity_source"]) == (16, 64 << 30, "manual")
    assert row["schedulable"]["cpus"] == 15.5 and row["max_sessions"] == 12  # kept from before
    refused = asci("node", "add", "rogue", "--url", node2.tcp_url, "--tls-ca", str(good.ca), "--tls-cert",
                   str(rogue.client_cert), "--tls-key", str(rogue.client_key))
    assert refused.returncode != 0 and refused.stderr.startswith("error: node rogue: the TLS connection failed")
    assert "Traceback" not in refused.stderr
    assert [r["name"] for r in json.loads(asci("node", "list", "--json").stdout)] == ["node2"]
