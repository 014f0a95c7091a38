"""The platform's half of a node with an agent: the session folder calls of ``broker.rundir``, made on
the node through its agent (``broker.agent``), and local bridges to a session's VNC bytes.

:class:`AgentNode` mirrors what the broker does with ``rundir`` for a local node::

    rundir.prepare(run_dir, key, uid, gid, pw, view_pw, hostname)  ->  node.prepare(key, uid, gid, pw, view_pw, hostname)
    rundir.ready(folder, uid, container_id_getter)                  ->  node.ready(folder, uid, container_id_getter)
    rundir.remove(folder)                                            ->  node.remove(key)
    rundir.sweep(run_dir, instance, keep)                            ->  node.sweep(instance, keep)
    rfb.connect(socket path)                                         ->  node.open_stream(key, viewer)

``prepare`` returns a :class:`broker.rundir.SessionDir` whose path is the folder *on the node* (what
the node's engine bind-mounts). The database records such a session's socket as
``agent://<node>/<key>`` (:func:`socket_uri`), never a path of this machine. Every connection
verifies the agent's certificate against the node's CA and the address it was registered with,
and presents the platform's client certificate; relay tickets are signed with that certificate's key.
websockify (and ``rfb``) open Unix sockets, so :class:`LocalBridge` serves a private one here whose
every connection becomes a relay through the agent.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from broker import rundir, tickets
from broker.agent import protocol
from broker.agent.server import pump
from broker.errors import BackendError, ForeignServer, NodeUnreachable, NotFound

URI_PREFIX = "agent://"
_CONTEXTS: dict[tuple, ssl.SSLContext] = {}
_CONTEXT_LOCK = threading.Lock()


def socket_uri(node: str, key: str) -> str:
    """What ``sessions.vnc_socket`` holds for a session on an agent node."""
    return f"{URI_PREFIX}{node}/{key}"


def parse_socket_uri(text: str) -> tuple[str, str] | None:
    """``(node, key)`` of an agent socket URI; None for a path on this machine."""
    if not text or not text.startswith(URI_PREFIX):
        return None
    node, _, key = text[len(URI_PREFIX):].partition("/")
    return (node, key) if node and key else None


def _stamp(path: str) -> tuple[str, int]:
    try:
        return path, os.stat(path).st_mtime_ns
    except OSError:
        return path, 0


def client_context(ca: str, cert: str, key: str) -> ssl.SSLContext:
    """TLS client context (cached per file contents' mtimes: rotated files are read again)."""
    stamp = (_stamp(ca), _stamp(cert), _stamp(key))
    with _CONTEXT_LOCK:
        context = _CONTEXTS.get(stamp)
        if context is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_verify_locations(ca)
            context.load_cert_chain(cert, key)
            context.check_hostname = True
            _CONTEXTS[stamp] = context
        return context


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` as a tuple; ValueError otherwise."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"agent address {text!r}: expected HOST:PORT")
    return host, int(port)


@dataclass(frozen=True)
class RelayRequest:
    """Everything an event loop needs to open one viewer's relay through a node's agent without a thread:
    where the agent listens, the TLS context that verifies it (and presents the platform's certificate),
    the name its certificate must carry and the request line, holding a fresh single-use ticket."""

    node: str
    host: str
    port: int
    context: ssl.SSLContext
    request: bytes

    def refusal(self, line: bytes) -> str:
        """Why the agent's answer line opens nothing ('' when it opens the relay)."""
        try:
            answer = protocol.decode(line)
        except protocol.ProtocolError as exc:
            return f"node {self.node}: its agent's answer is not a protocol line: {exc}"
        return "" if answer.get("ok") else refusal_text(self.node, answer)


def refusal_text(node: str, answer: dict) -> str:
    """The message of an agent's ``ok: false`` answer, naming the node."""
    return f"node {node}: {answer.get('error') or 'refused'}"


class AgentNode:
    """A node's agent as the platform uses it (thread-safe; a TLS connection per request)."""

    def __init__(self, name: str, address: str, ca: str, cert: str, key: str, timeout: float = 10.0) -> None:
        if not (ca and cert and key):
            raise BackendError(f"node {name}: an agent needs --tls-ca, --tls-cert and --tls-key")
        self.name, self.address, self.timeout = name, address, timeout
        self.host, self.port = parse_address(address)
        self.ca, self.cert, self.key = ca, cert, key

    @classmethod
    def of(cls, ref) -> "AgentNode | None":
        """The agent of a :class:`NodeRef` (or a ``Node`` row); None for a node without one."""
        address = getattr(ref, "agent", "") or ""
        if not address:
            return None
        return cls(ref.name, address, ref.tls_ca, ref.tls_cert, ref.tls_key)

    # ------------------------------------------------------------ transport
    def _context(self) -> ssl.SSLContext:
        try:
            return client_context(self.ca, self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise NodeUnreachable(f"node {self.name}: cannot load its TLS files: {exc}") from None

    def connect(self) -> ssl.SSLSocket:
        """A TLS connection to the agent, its certificate verified (NodeUnreachable otherwise)."""
        context = self._context()
        try:
            raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a viewer's input, sent at once
        except OSError as exc:
            raise NodeUnreachable(f"node {self.name}: its agent {self.address} does not answer: {exc}") from None
        try:
            return context.wrap_socket(raw, server_hostname=self.host)
        except ssl.SSLError as exc:
            raw.close()
            raise NodeUnreachable(f"node {self.name}: the TLS connection to its agent failed: {exc}") from None
        except OSError as exc:
            raw.close()
            raise NodeUnreachable(f"node {self.name}: its agent {self.address} does not answer: {exc}") from None

    def _exchange(self, request: dict) -> tuple[ssl.SSLSocket, dict]:
        conn = self.connect()
        try:
            conn.sendall(protocol.encode(request))
            answer = protocol.read_line(conn)
        except (OSError, protocol.ProtocolError) as exc:
            conn.close()
            raise NodeUnreachable(f"node {self.name}: its agent dropped the {request.get('op')} request: "
                                  f"{exc}") from None
        if answer.get("ok"):
            return conn, answer
        conn.close()
        message = refusal_text(self.name, answer)
        kind = answer.get("kind")
        if kind == "foreign":
            raise ForeignServer(message)
        if kind == "missing":
            raise NotFound(message)
        raise BackendError(message)

    def call(self, op: str, **arguments) -> dict:
        """One request; its answer (BackendError/ForeignServer/NotFound with the agent's reason)."""
        conn, answer = self._exchange({"op": op, **arguments})
        conn.close()
        return answer

    # ------------------------------------------------------------ rundir's calls, on the node
    def hello(self) -> dict:
        """The agent's name, run folder and the session folders it holds."""
        answer = self.call("hello")
        if answer.get("name") != self.name:
            raise NodeUnreachable(f"node {self.name}: the agent at {self.address} is node {answer.get('name')!r}")
        return answer

    def ping(self) -> None:
        """NodeUnreachable unless the agent answers as this node."""
        self.hello()

    def held(self) -> list[str]:
        """The session folders on the node."""
        return list(self.hello()["sessions"])

    def prepare(self, key: str, uid: int, gid: int, password: str, view_password: str,
                hostname: str = "localhost") -> rundir.SessionDir:
        """Make the session's folder, password and hosts file on the node; the folder (a node path)."""
        answer = self.call("prepare", key=key, uid=uid, gid=gid, password=password, view_password=view_password,
                           hostname=hostname)
        return rundir.SessionDir(Path(answer["path"]))

    def ready(self, folder: rundir.SessionDir, uid: int, container_id: Callable[[], str]) -> bool:
        """``rundir.ready`` on the node: False while Xvnc is not up; then locked, proved, True
        (:class:`ForeignServer` when anything else answers)."""
        ident = container_id()
        if not ident:
            return False
        return bool(self.call("ready", key=folder.path.name, uid=uid, container_id=ident)["ready"])

    def rewrite_password(self, key: str, password: str, view_password: str) -> None:
        """Replace the session's password file on the node (``rundir.rewrite_password`` there)."""
        self.call("password", key=key, password=password, view_password=view_password)

    def remove(self, key: str) -> None:
        """Delete the session's folder on the node."""
        self.call("remove", key=key)

    def sweep(self, instance: str, keep: set[str]) -> list[str]:
        """Remove the node's folders of broker ``instance`` not in ``keep``; their names."""
        return list(self.call("sweep", instance=instance, keep=sorted(keep))["removed"])

    def make_home(self, root: str, user: str, uid: int, gid: int) -> str:
        """``root/user`` on the node's (shared) home root, made with the user's uid, 0700."""
        return self.call("home", root=str(root), user=user, uid=uid, gid=gid)["path"]

    def has_data(self, path: str) -> bool:
        """True when the node has a folder at ``path`` (the experiment's data)."""
        return bool(self.call("data", path=path)["exists"])

    # ------------------------------------------------------------ VNC bytes
    def ticket(self, key: str, viewer: str = "owner", ttl_s: float = tickets.DEFAULT_TTL_S) -> str:
        """A relay ticket for ``viewer`` to open session folder ``key`` on this node."""
        try:
            private = tickets.load_private_key(self.key)
        except (OSError, ValueError) as exc:
            raise BackendError(f"node {self.name}: cannot sign a relay ticket: {exc}") from None
        return tickets.mint(private, key, self.name, viewer, ttl_s)

    def relay_request(self, key: str, viewer: str = "owner") -> RelayRequest:
        """What an event loop sends to open session folder ``key``'s relay for ``viewer`` (a fresh ticket;
        :meth:`open_stream` is the blocking equivalent)."""
        return RelayRequest(self.name, self.host, self.port, self._context(),
                            protocol.encode({"op": "relay", "ticket": self.ticket(key, viewer)}))

    def open_stream(self, key: str, viewer: str = "owner", ticket: str | None = None) -> ssl.SSLSocket:
        """A connection carrying the session's VNC bytes (through the agent's relay)."""
        conn, _answer = self._exchange({"op": "relay", "ticket": ticket or self.ticket(key, viewer)})
        conn.settimeout(None)
        return conn


class LocalBridge:
    """A private Unix socket on this machine (root 0700 folder, 0600 socket, so ``rundir.checked_socket``
    accepts it) whose every connection is relayed to one session through its node's agent.

    ``once``: close after the first connection (websockify opens its target once per viewer); an unused
    bridge closes after ``accept_timeout_s``."""

    def __init__(self, node: AgentNode, key: str, viewer: str = "owner", parent: Path | None = None,
                 once: bool = False, accept_timeout_s: float = 30.0) -> None:
        self.node, self.key, self.viewer, self.once = node, key, viewer, once
        if parent is not None:
            Path(parent).mkdir(mode=0o700, parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix="bridge-", dir=parent))
        os.chmod(self.folder, 0o700)
        self.path = str(self.folder / rundir.SOCKET_NAME)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        os.chmod(self.path, 0o600)
        self._listener.listen(8)
        self._listener.settimeout(accept_timeout_s)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"bridge-{key}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            while not self._closed.is_set():
                try:
                    local, _ = self._listener.accept()
                except (socket.timeout, OSError):
                    if self.once:
                        return
                    continue
                threading.Thread(target=self._relay, args=(local,), daemon=True).start()
                if self.once:
                    return
        finally:
            self._cleanup()

    def _relay(self, local: socket.socket) -> None:
        with local:
            try:
                remote = self.node.open_stream(self.key, self.viewer)
            except (BackendError, NotFound) as exc:
                import logging

                logging.getLogger(__name__).warning("bridge to %s on %s: %s", self.key, self.node.name, exc)
                return
            with remote:
                local.settimeout(None)
                pump(remote, local)

    def _cleanup(self) -> None:
        try:
            self._listener.close()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def close(self) -> None:
        """Stop accepting and remove the socket (open relays end with their viewer)."""
        self._closed.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._cleanup()

    def __enter__(self) -> "LocalBridge":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
