"""The backend contract (after jupyterhub's Spawner): start, stop, poll, get_state.

A backend only talks to the container engine. The broker core (``service``)
owns placement, time-outs, readiness checks, database state and every message
a user sees. State a backend needs to find its container again is returned by
``start`` (and by ``list_managed`` for what it finds on a node) as a JSON-able
dict; the core stores it in ``sessions.backend_state`` and hands it back
unread: its keys are the backend's business alone.
A Kubernetes backend would implement the same methods with pods.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

from asci.progress import LogSink


@dataclass(frozen=True)
class NodeRef:
    """How to reach a node's engine."""

    name: str
    docker_url: str
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_verify: bool = True
    agent: str = ""  # HOST:PORT of the node's agent (broker.agent_client); "": the node shares this machine

    @classmethod
    def of(cls, node) -> "NodeRef":
        return cls(node.name, node.docker_url, node.tls_ca, node.tls_cert, node.tls_key, node.tls_verify,
                   getattr(node, "agent", "") or "")


@dataclass(frozen=True)
class LaunchSpec:
    """Everything a backend needs to start one desktop session (``broker.service.desktop_spec`` makes it)."""

    session_id: int
    name: str  # container / service name
    image: str  # registry/name@sha256:...
    run_dir: str  # host folder of the session: vnc/ (the VNC socket) and secret/ (the password file)
    uid: int
    gid: int
    user_name: str
    home_volume: str
    home_path: str
    data_path: str = ""
    data_read_only: bool = True
    cpus: float = 2.0  # limit
    memory_bytes: int = 4 << 30  # limit
    cpu_guarantee: float = 0.25  # CPU weight under contention (placement already counted it)
    memory_guarantee_bytes: int = 512 << 20  # soft memory limit
    pids_limit: int = 2048
    gpu_uuid: str = ""
    network: str = "none"  # "none" (loopback only) or the Docker network the facility made for desktops
    labels: dict[str, str] = field(default_factory=dict)
    home_bind: str = ""  # a folder on the node bind-mounted as the home instead of ``home_volume`` (home_root)


@dataclass(frozen=True)
class Capacity:
    """What a node's engine reports it has: CPUs and memory (``docker info`` NCPU and MemTotal)."""

    cpus: float
    memory_bytes: int


@dataclass(frozen=True)
class Managed:
    """A session found on a node by its labels: its backend state, and whether it runs."""

    session_id: int
    state: dict
    running: bool
    labels: dict[str, str]


class Backend(abc.ABC):
    """Start, stop and watch desktop sessions on nodes."""

    @abc.abstractmethod
    def start(self, node: NodeRef, spec: LaunchSpec) -> dict:
        """Create and start the session; returns its backend state (ids)."""

    @abc.abstractmethod
    def stop(self, node: NodeRef, state: dict) -> None:
        """Stop and remove the session; already gone counts as success."""

    @abc.abstractmethod
    def poll(self, node: NodeRef, state: dict) -> str | None:
        """None while the session runs, otherwise why not ("exited 1", "missing")."""

    def get_state(self, state: dict) -> dict:
        """The JSON-able state to keep in the database (what ``start`` returned)."""
        return dict(state)

    @abc.abstractmethod
    def container_id(self, node: NodeRef, state: dict) -> str:
        """The engine's id of the session's running container ("" while there is none), for proving that
        the process serving the session's VNC socket is the session's own."""

    @abc.abstractmethod
    def ping(self, node: NodeRef) -> None:
        """Raise :class:`broker.errors.NodeUnreachable` unless the node answers."""

    @abc.abstractmethod
    def capacity(self, node: NodeRef) -> Capacity:
        """The node's CPUs and memory as its engine reports them (NodeUnreachable when it does not answer)."""

    @abc.abstractmethod
    def ensure_image(self, node: NodeRef, image: str, log: LogSink | None = None) -> bool:
        """Pull ``image`` (by digest) when the node lacks it, sending ``log`` "bytes done of total" lines;
        True when it pulled."""

    @abc.abstractmethod
    def list_managed(self, node: NodeRef, instance: str) -> list[Managed]:
        """Session containers of broker ``instance`` on the node (for reconciliation)."""

    def logs(self, node: NodeRef, state: dict, tail: int = 50) -> str:
        """The session's last log lines, for failure messages (optional)."""
        return ""

    @abc.abstractmethod
    def exec(self, node: NodeRef, state: dict, command: list[str], user: str, environment: dict[str, str]
             ) -> tuple[int, str]:
        """Run ``command`` inside the running session as ``user``; its exit code and output."""

    def file_channel(self, node: NodeRef, state: dict):
        """The ``broker.file_channel.FileChannel`` of the session's running desktop (files in and out, as
        its user); backends without one refuse."""
        from broker.errors import BackendError

        raise BackendError(f"{type(self).__name__} cannot transfer files")

    def remove_volume(self, node: NodeRef, name: str) -> None:
        """Remove a named volume (a temporary home); a missing one is fine."""

    def close(self) -> None:
        """Release clients."""
