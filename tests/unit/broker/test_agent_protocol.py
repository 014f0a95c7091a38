"""The node agent over real mutual TLS on 127.0.0.1 (no Docker: the engine check is off and a stand-in
VNC server serves a locked socket): folders, homes, data, sweeps, relays and every refusal."""

from __future__ import annotations

import os
import socket
import ssl
import stat
import threading

import pytest

from broker import certs, rundir, tickets
from broker.agent import make_server, protocol
from broker.agent_client import AgentNode, LocalBridge, parse_socket_uri, socket_uri
from broker.errors import BackendError, NodeUnreachable, NotFound

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the agent hands folders to other uids: root only")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    certs.init(folder)
    certs.issue(folder, "far1", ["127.0.0.1"])
    certs.issue(folder, "far2", ["127.0.0.1"])
    other = tmp_path_factory.mktemp("rogue")
    certs.init(other, name="rogue")
    return folder, other


@pytest.fixture(scope="module")
def agent(pki, tmp_path_factory):
    folder = pki[0]
    run_dir = tmp_path_factory.mktemp("agent-run") / "run"
    server = make_server("127.0.0.1:0", folder / "far1", "unix:///nonexistent.sock", run_dir, check_engine=False)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server, f"127.0.0.1:{server.server_address[1]}", run_dir
    server.shutdown()
    server.server_close()


def _client(pki, agent, name="far1", cert="cert.pem", key="key.pem", ca=None) -> AgentNode:
    folder = pki[0]
    return AgentNode(name, agent[1], str(ca or folder / "ca.pem"), str(folder / cert), str(folder / key), timeout=5)


def test_hello_names_the_node_from_its_certificate(pki, agent):
    answer = _client(pki, agent).hello()
    assert answer["name"] == "far1" and answer["run_dir"] == str(agent[2])
    with pytest.raises(NodeUnreachable, match="is node 'far1'"):
        _client(pki, agent, name="far2").ping()  # the address of another node's registration


def test_prepare_makes_the_folder_on_the_node_and_remove_deletes_it(pki, agent):
    node = _client(pki, agent)
    folder = node.prepare("t1-s1", 70001, 70002, "pw123456", "view1234", "asci-t1-s1")
    assert folder.path == agent[2] / "t1-s1"
    info = os.lstat(folder.vnc)
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (70001, 70002, 0o700)
    passwd = folder.secret / "passwd"
    assert os.lstat(passwd).st_uid == 70001 and stat.S_IMODE(os.lstat(passwd).st_mode) == 0o400
    assert len(passwd.read_bytes()) == 16 and "asci-t1-s1" in folder.hosts.read_text()
    assert node.held() == ["t1-s1"]
    assert node.ready(folder, 70001, lambda: "") is False  # no container yet: not asked
    assert node.ready(folder, 70001, lambda: "a" * 64) is False  # no socket yet
    node.remove("t1-s1")
    assert not folder.path.exists() and node.held() == []


def test_bad_requests_are_refused_with_reasons(pki, agent):
    node = _client(pki, agent)
    with pytest.raises(BackendError, match="unsafe session folder"):
        node.prepare("../etc", 70001, 70001, "pw", "pw", "h")
    with pytest.raises(BackendError, match="uid: expected"):
        node.call("prepare", key="t1-s2", uid=-1, gid=1, password="a", view_password="b", hostname="h")
    with pytest.raises(BackendError, match="unknown operation"):
        node.call("shell", command="id")
    with pytest.raises(BackendError, match="container_id"):
        node.call("ready", key="t1-s2", uid=70001, container_id="../x")
    with pytest.raises(NotFound, match="no session folder"):
        node.call("ready", key="t1-s9", uid=70001, container_id="b" * 64)
    with pytest.raises(BackendError, match="unknown operation"):
        node.call("relay_target", ticket="x")  # only op_* methods are operations
    assert not (agent[2] / "t1-s2").exists()


def test_sweep_removes_only_this_instances_unkept_folders(pki, agent):
    node = _client(pki, agent)
    for key in ("t2-s1", "t2-s2", "other-s1"):
        node.prepare(key, 70001, 70001, "a", "b", "h")
    assert node.sweep("t2", {"t2-s2"}) == ["t2-s1"]
    assert node.held() == ["other-s1", "t2-s2"]
    node.sweep("t2", set())
    node.sweep("other", set())
    assert node.held() == []


def test_homes_are_made_for_the_user_and_data_paths_answered(pki, agent, tmp_path):
    node = _client(pki, agent)
    path = node.make_home(str(tmp_path), "alice", 70005, 70006)
    info = os.lstat(path)
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (70005, 70006, 0o700)
    assert node.make_home(str(tmp_path), "alice", 70005, 70006) == path  # kept as it is
    with pytest.raises(BackendError, match="belongs to uid 70005"):
        node.make_home(str(tmp_path), "alice", 70007, 70007)
    with pytest.raises(BackendError, match="unusable user name"):
        node.make_home(str(tmp_path), "../root", 70005, 70005)
    with pytest.raises(BackendError, match="not a folder here"):
        node.make_home(str(tmp_path / "missing"), "bob", 70005, 70005)
    assert node.has_data(str(tmp_path)) is True and node.has_data(str(tmp_path / "nope")) is False
    with pytest.raises(BackendError, match="absolute"):
        node.has_data("relative/path")


def test_clients_without_a_facility_client_certificate_are_refused(pki, agent):
    folder, rogue = pki
    host, port = agent[1].split(":")
    good = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    good.load_verify_locations(folder / "ca.pem")
    good.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    assert not _refused(good, host, int(port))  # the platform's certificate gets an answer
    # no certificate at all
    plain = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    plain.load_verify_locations(folder / "ca.pem")
    assert _refused(plain, host, int(port))
    # a certificate of another CA
    other = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    other.load_verify_locations(folder / "ca.pem")
    other.load_cert_chain(rogue / "cert.pem", rogue / "key.pem")
    assert _refused(other, host, int(port))
    # a node's server certificate (same CA, not for clients)
    node_cert = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    node_cert.load_verify_locations(folder / "ca.pem")
    node_cert.load_cert_chain(folder / "far2" / "server-cert.pem", folder / "far2" / "server-key.pem")
    assert _refused(node_cert, host, int(port))
    # and the platform refuses an agent whose certificate another CA issued
    with pytest.raises(NodeUnreachable, match="TLS connection to its agent failed"):
        _client(pki, agent, ca=rogue / "ca.pem").ping()


def _refused(context, host, port) -> bool:
    """True when no answer comes back to a hello."""
    try:
        with socket.create_connection((host, port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=host) as conn:
                conn.sendall(protocol.encode({"op": "hello"}))
                return conn.recv(100) == b""
    except (ssl.SSLError, OSError):
        return True


class FakeVnc:
    """A locked session socket (root 0700 folder, root 0600 socket) served by an RFB-greeting echo server."""

    def __init__(self, folder: rundir.SessionDir) -> None:
        os.chown(folder.vnc, 0, 0)
        os.chmod(folder.vnc, 0o700)
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(folder.socket))
        os.chmod(folder.socket, 0o600)
        self.listener.listen(4)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.echo, args=(conn,), daemon=True).start()

    @staticmethod
    def echo(conn) -> None:
        with conn:
            conn.sendall(b"RFB 003.008\n")
            while data := conn.recv(65536):
                conn.sendall(data)


def _roundtrip(stream, payload: bytes) -> bytes:
    assert stream.recv(12) == b"RFB 003.008\n"
    stream.sendall(payload)
    got = b""
    while len(got) < len(payload):
        got += stream.recv(65536)
    return got


def test_a_ticket_opens_the_relay_once_and_nothing_else_opens_it(pki, agent):
    node = _client(pki, agent)
    folder = node.prepare("t3-s1", 70001, 70001, "a", "b", "h")
    vnc = FakeVnc(folder)
    try:
        ticket = node.ticket("t3-s1", "owner")
        with node.open_stream("t3-s1", ticket=ticket) as stream:
            assert _roundtrip(stream, os.urandom(300_000)) is not None
        with pytest.raises(BackendError, match="already used"):
            node.open_stream("t3-s1", ticket=ticket)
        folder_ca = pki[0]
        platform = tickets.load_private_key(folder_ca / "key.pem")
        other_node = tickets.mint(platform, "t3-s1", "far2", "owner")
        with pytest.raises(BackendError, match="for node 'far2'"):
            node.open_stream("t3-s1", ticket=other_node)
        expired = tickets.mint(platform, "t3-s1", "far1", "owner", ttl_s=5, now=1_000_000)
        with pytest.raises(BackendError, match="expired"):
            node.open_stream("t3-s1", ticket=expired)
        forged = tickets.mint(tickets.load_private_key(pki[1] / "key.pem"), "t3-s1", "far1", "owner")
        with pytest.raises(BackendError, match="forged"):
            node.open_stream("t3-s1", ticket=forged)
        with pytest.raises(NotFound, match="no locked socket"):
            node.open_stream("t3-s9")  # a valid ticket for a session the node does not hold
    finally:
        vnc.listener.close()
        node.remove("t3-s1")


def test_a_local_bridge_relays_every_connection_through_the_agent(pki, agent, tmp_path):
    node = _client(pki, agent)
    folder = node.prepare("t4-s1", 70001, 70001, "a", "b", "h")
    vnc = FakeVnc(folder)
    try:
        with LocalBridge(node, "t4-s1", "share:4", parent=tmp_path / "bridges") as bridge:
            assert rundir.checked_socket(bridge.path) == bridge.path  # what websockify may open
            for _ in range(2):
                with socket.socket(socket.AF_UNIX) as local:
                    local.connect(bridge.path)
                    payload = os.urandom(5000)
                    assert _roundtrip(local, payload) == payload
        assert not os.path.exists(bridge.path)
        once = LocalBridge(node, "t4-s1", parent=tmp_path / "bridges", once=True)
        with socket.socket(socket.AF_UNIX) as local:
            local.connect(once.path)
            assert _roundtrip(local, b"x" * 10) == b"x" * 10
        once._thread.join(5)
        assert not os.path.exists(once.path)
    finally:
        vnc.listener.close()
        node.remove("t4-s1")


def test_socket_uris():
    assert socket_uri("far1", "i-s3") == "agent://far1/i-s3"
    assert parse_socket_uri("agent://far1/i-s3") == ("far1", "i-s3")
    assert parse_socket_uri("/root/run/i-s3/vnc/vnc.sock") is None and parse_socket_uri("agent://x") is None


def test_relay_connections_send_small_pieces_at_once(pki, agent):
    """Both ends of an agent connection set TCP_NODELAY: a VNC update is written in pieces, and with
    Nagle's algorithm each piece after the first waited for the viewer's delayed ACK (40 ms a frame)."""
    server = agent[0]
    seen = []
    accept = server.get_request

    def spying():
        conn, address = accept()
        seen.append(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        return conn, address

    server.get_request = spying
    try:
        node = _client(pki, agent)
        folder = node.prepare("t5-s1", 70001, 70001, "a", "b", "h")
        vnc = FakeVnc(folder)
        try:
            with node.open_stream("t5-s1") as stream:
                assert stream.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                assert _roundtrip(stream, b"ping") == b"ping"
        finally:
            vnc.listener.close()
            node.remove("t5-s1")
    finally:
        del server.get_request
    assert seen and all(seen), seen


def test_the_viewer_proxy_opens_a_relay_from_its_event_loop(pki, agent):
    """``web.viewer_proxy`` speaks TLS to the agent itself (no bridge, no thread): the request with its
    ticket opens the session's bytes; a used ticket is refused with the agent's reason."""
    import asyncio
    import concurrent.futures

    from web.viewer_proxy import _connect_agent

    node = _client(pki, agent)
    folder = node.prepare("t6-s1", 70001, 70001, "a", "b", "h")
    vnc = FakeVnc(folder)
    relay = node.relay_request("t6-s1", "share:6")
    payload = os.urandom(200_000)

    async def through() -> bytes:
        reader, writer = await _connect_agent(relay)
        try:
            assert await reader.readexactly(12) == b"RFB 003.008\n"
            writer.write(payload)
            await writer.drain()
            return await reader.readexactly(len(payload))
        finally:
            writer.close()

    def in_a_loop_of_its_own(coroutine):  # the suite's browser tests may hold a loop in this thread
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, coroutine).result(timeout=30)

    try:
        assert in_a_loop_of_its_own(through()) == payload
        with pytest.raises(OSError, match="already used"):
            in_a_loop_of_its_own(through())  # the same request line: its ticket is single-use
    finally:
        vnc.listener.close()
        node.remove("t6-s1")
