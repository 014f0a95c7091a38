"""``asci node agent``: the service on a node that owns that node's session folders.

It runs as root beside the node's Docker engine, in the node's filesystem and pid view, and needs
no database and no platform settings: what it does is asked for, one request per TLS connection
(``broker.agent.protocol``), by clients holding a certificate of the facility CA made for client
use. It keeps the isolation of a desktop on the node: the session's folder, password file and
hosts file are made here (``broker.rundir.prepare``), ``vnc/`` is handed to the session's uid,
then locked and the server on the socket proved (``rundir.ready``: ``SO_PEERCRED`` and the pid's
cgroup against the container id the broker recorded, and that container running on this node's
engine). A viewer's bytes are relayed only for a ticket (``broker.tickets``) signed by the very
client certificate of the connection, for this node, unexpired and unused.
"""

from __future__ import annotations

import logging
import os
import re
import select
import socket
import socketserver
import ssl
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from asci import rfb
from broker import rundir
from broker.agent import protocol
from broker.errors import BackendError, ForeignServer
from broker.tickets import TicketChecker, TicketRefused, is_client_certificate

log = logging.getLogger("asci.agent")
_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
_INSTANCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,60}")
RELAY_BUFFER = 256 * 1024


class Refused(Exception):
    """A request the agent answers with ``ok: false``; ``kind`` is one of ``protocol.KINDS``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def server_context(tls_dir: Path) -> ssl.SSLContext:
    """TLS 1.2+ with the node's certificate; client certificates of the facility CA required."""
    tls_dir = Path(tls_dir)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls_dir / "server-cert.pem", tls_dir / "server-key.pem")
    context.load_verify_locations(tls_dir / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def node_name(tls_dir: Path) -> str:
    """The node's name: the common name of its server certificate (``asci node certs issue DIR NAME``)."""
    from broker.certs import common_name

    return common_name(x509.load_pem_x509_certificate((Path(tls_dir) / "server-cert.pem").read_bytes()))


@dataclass
class Agent:
    """What the agent does for each request (no sockets here: ``handle`` is called by the server)."""

    name: str
    run_dir: Path
    docker_url: str = "unix:///var/run/docker.sock"
    check_engine: bool = True

    def __post_init__(self) -> None:
        self.tickets = TicketChecker(self.name)
        self._docker = None
        self._docker_lock = threading.Lock()

    # ------------------------------------------------------------ helpers
    def _folder(self, request: dict) -> rundir.SessionDir:
        key = request.get("key")
        if not isinstance(key, str):
            raise Refused("bad", "key: expected a session folder name")
        try:
            return rundir.session_dir(self.run_dir, key)
        except BackendError as exc:
            raise Refused("bad", str(exc)) from None

    @staticmethod
    def _int(request: dict, name: str, low: int = 1, high: int = 2**31 - 1) -> int:
        value = request.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise Refused("bad", f"{name}: expected an integer from {low} to {high}")
        return value

    @staticmethod
    def _str(request: dict, name: str, limit: int = 4096) -> str:
        value = request.get(name)
        if not isinstance(value, str) or len(value) > limit:
            raise Refused("bad", f"{name}: expected a string")
        return value

    def engine_container_running(self, container_id: str) -> bool:
        """True when the node's own engine runs a container of exactly this id."""
        import docker

        with self._docker_lock:
            if self._docker is None:
                self._docker = docker.DockerClient(base_url=self.docker_url, timeout=10, version="1.41")
            client = self._docker
        try:
            info = client.api.inspect_container(container_id)
        except docker.errors.NotFound:
            return False
        except docker.errors.DockerException as exc:
            raise Refused("failed", f"the node's engine does not answer: {exc}") from None
        return info.get("Id") == container_id and bool(info.get("State", {}).get("Running"))

    # ------------------------------------------------------------ operations
    def op_hello(self, request: dict) -> dict:
        return {"name": self.name, "run_dir": str(self.run_dir), "sessions": self.held()}

    def held(self) -> list[str]:
        """Names of the session folders on the node."""
        try:
            return sorted(name for name in os.listdir(self.run_dir)
                          if os.path.isdir(os.path.join(self.run_dir, name)))
        except FileNotFoundError:
            return []

    def op_prepare(self, request: dict) -> dict:
        folder = self._folder(request)
        uid, gid = self._int(request, "uid"), self._int(request, "gid")
        try:
            made = rundir.prepare(self.run_dir, folder.path.name, uid, gid, self._str(request, "password", 64),
                                  self._str(request, "view_password", 64), self._str(request, "hostname", 63))
        except BackendError as exc:
            raise Refused("failed", str(exc)) from None
        log.info("prepared %s for uid %s", made.path.name, uid)
        return {"path": str(made.path)}

    def op_ready(self, request: dict) -> dict:
        folder = self._folder(request)
        uid = self._int(request, "uid")
        container_id = self._str(request, "container_id", 64)
        if not re.fullmatch(r"[0-9a-f]{64}", container_id):
            raise Refused("bad", "container_id: expected the engine's 64-hex id")
        if not os.path.isdir(folder.path):
            raise Refused("missing", f"no session folder {folder.path.name} on node {self.name}")
        if self.check_engine and not self.engine_container_running(container_id):
            return {"ready": False}
        try:
            return {"ready": rundir.ready(folder, uid, lambda: container_id)}
        except ForeignServer as exc:
            raise Refused("foreign", str(exc)) from None
        except (BackendError, OSError) as exc:
            raise Refused("failed", str(exc)) from None

    def op_password(self, request: dict) -> dict:
        folder = self._folder(request)
        if not os.path.isdir(folder.path):
            raise Refused("missing", f"no session folder {folder.path.name} on node {self.name}")
        try:
            rundir.rewrite_password(folder, self._str(request, "password", 64), self._str(request, "view_password", 64))
        except BackendError as exc:
            raise Refused("failed", str(exc)) from None
        return {"rewritten": True}

    def op_remove(self, request: dict) -> dict:
        folder = self._folder(request)
        existed = os.path.lexists(folder.path)
        rundir.remove(folder)
        return {"removed": existed}

    def op_sweep(self, request: dict) -> dict:
        instance = self._str(request, "instance", 64)
        keep = request.get("keep")
        if not _INSTANCE.fullmatch(instance) or not isinstance(keep, list) or not all(isinstance(k, str) for k in keep):
            raise Refused("bad", "sweep: expected an instance name and a list of folder names to keep")
        return {"removed": rundir.sweep(self.run_dir, instance, set(keep))}

    def op_home(self, request: dict) -> dict:
        root, user = self._str(request, "root"), self._str(request, "user", 32)
        uid, gid = self._int(request, "uid"), self._int(request, "gid")
        if not _USER.fullmatch(user):
            raise Refused("bad", f"unusable user name {user!r}")
        try:
            path = make_home(Path(root), user, uid, gid)
        except BackendError as exc:
            raise Refused("failed", f"node {self.name}: {exc}") from None
        return {"path": str(path)}

    def op_data(self, request: dict) -> dict:
        path = self._str(request, "path")
        if not os.path.isabs(path):
            raise Refused("bad", "path: expected an absolute path")
        return {"exists": os.path.isdir(path)}

    def handle(self, request: dict) -> dict:
        """The answer to one (non-relay) request; raises :class:`Refused`."""
        operation = getattr(self, f"op_{request.get('op')}", None) if isinstance(request.get("op"), str) else None
        if operation is None or request.get("op") == "relay":
            raise Refused("bad", f"unknown operation {request.get('op')!r}")
        return operation(request)

    def relay_target(self, request: dict, peer_der: bytes) -> tuple[str, str]:
        """The locked socket a relay ticket opens, and the viewer it names; :class:`Refused` otherwise."""
        try:
            ticket = self.tickets.check(request.get("ticket"), peer_der)
        except TicketRefused as exc:
            raise Refused("refused", str(exc)) from None
        folder = rundir.session_dir(self.run_dir, ticket.session_key)
        path = rundir.checked_socket(folder.socket)
        if path is None:
            raise Refused("missing", f"session {ticket.session_key} has no locked socket on node {self.name}")
        return path, ticket.viewer


def make_home(root: Path, user: str, uid: int, gid: int) -> Path:
    """``root/user``, made with ``uid:gid`` and mode 0700 when absent (an existing home is left as it is;
    a symlink or file there is refused)."""
    root = Path(root)
    if not root.is_absolute() or not root.is_dir():
        raise BackendError(f"the home root {root} is not a folder here")
    home = root / user
    try:
        os.mkdir(home, 0o700)
        os.chown(home, uid, gid)
        os.chmod(home, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise BackendError(f"cannot make the home {home}: {exc}") from None
    info = os.lstat(home)
    if not stat.S_ISDIR(info.st_mode):
        raise BackendError(f"{home} is not a folder")
    if info.st_uid != uid:
        raise BackendError(f"{home} belongs to uid {info.st_uid}, not the user's uid {uid}")
    return home


def _drain(source: socket.socket, limit: int) -> bytes:
    """What ``source`` has now, up to ``limit`` bytes: one blocking read, then whatever else is already
    there (a TLS socket yields one 16 KiB record per read; gathering them halves the relay's cost for a
    full frame). b"" at the end of the stream."""
    data = source.recv(RELAY_BUFFER)
    if not data:
        return b""
    chunks, size = [data], len(data)
    source.setblocking(False)
    try:
        while size < limit:
            try:
                more = source.recv(RELAY_BUFFER)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            if not more:
                break  # the end: reported by the next (blocking) read
            chunks.append(more)
            size += len(more)
    finally:
        source.setblocking(True)
    return b"".join(chunks)


def pump(first: socket.socket, second: socket.socket, idle_s: float = 3600.0) -> None:
    """Copy bytes both ways until either side closes (TLS sockets: buffered bytes are drained first)."""
    sockets = (first, second)
    try:
        while True:
            ready = [s for s in sockets if isinstance(s, ssl.SSLSocket) and s.pending()]
            if not ready:
                ready, _, _ = select.select(sockets, [], [], idle_s)
                if not ready:
                    return
            for source in ready:
                target = second if source is first else first
                data = _drain(source, 4 * RELAY_BUFFER)
                if not data:
                    return
                target.sendall(data)
    except (OSError, ssl.SSLError):
        return


class _Handler(socketserver.BaseRequestHandler):
    server: "AgentServer"

    def handle(self) -> None:
        conn: ssl.SSLSocket = self.request
        agent = self.server.agent
        try:
            conn.settimeout(15)
            conn.do_handshake()
            peer = conn.getpeercert(binary_form=True) or b""
            if not is_client_certificate(x509.load_der_x509_certificate(peer)):
                log.warning("refused %s: its certificate is not for client use", self.client_address[0])
                return
            request = protocol.read_line(conn)
        except (OSError, ssl.SSLError, ValueError, protocol.ProtocolError) as exc:
            log.info("connection from %s ended: %s", self.client_address[0], exc)
            return
        try:
            if request.get("op") == "relay":
                path, viewer = agent.relay_target(request, peer)
                try:
                    vnc = rfb.connect(path, timeout=5)
                except OSError as exc:
                    raise Refused("missing", f"the session's socket does not answer: {exc}") from None
                with vnc:
                    conn.sendall(protocol.encode({"ok": True}))
                    log.info("relay opened to %s for %s from %s", path, viewer, self.client_address[0])
                    conn.settimeout(None)
                    vnc.settimeout(None)
                    pump(conn, vnc)
                return
            answer = {"ok": True, **agent.handle(request)}
        except Refused as exc:
            log.warning("refused %s from %s: %s", request.get("op"), self.client_address[0], exc)
            answer = {"ok": False, "kind": exc.kind, "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - one request's bug must not end the agent
            log.exception("request %s failed", request.get("op"))
            answer = {"ok": False, "kind": "failed", "error": f"{exc.__class__.__name__}: {exc}"}
        try:
            conn.sendall(protocol.encode(answer))
        except OSError:
            pass


class AgentServer(socketserver.ThreadingTCPServer):
    """The agent's TLS listener: a thread per connection."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], agent: Agent, context: ssl.SSLContext) -> None:
        self.agent = agent
        self.context = context
        super().__init__(address, _Handler)

    def get_request(self):
        sock, address = super().get_request()
        # VNC updates are written in pieces: without this, Nagle's algorithm holds a piece back until the
        # viewer's (delayed, up to 40 ms) ACK of the one before, and a 25 KiB update took 40 ms, not 1
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address


def parse_listen(text: str) -> tuple[str, int]:
    """``ADDRESS:PORT`` (``[v6]:PORT`` too) as a tuple; ValueError otherwise."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free port (tests)
        raise ValueError(f"--listen {text!r}: expected ADDRESS:PORT")
    return host, int(port)


def make_server(listen: str, tls_dir: Path, docker_url: str, run_dir: Path, check_engine: bool = True
                ) -> AgentServer:
    """The agent listening on ``listen``, its name read from its certificate (not yet serving)."""
    name = node_name(tls_dir)
    if not name:
        raise ValueError(f"{tls_dir}/server-cert.pem names no node (no common name)")
    agent = Agent(name, Path(run_dir), docker_url, check_engine)
    return AgentServer(parse_listen(listen), agent, server_context(tls_dir))
