"""Sessions as containers on one or several Docker daemons (unix socket, or TCP with TLS).

One wrapper per Docker call; stop and remove treat "not found" and "conflict"
(already stopping) as success; containers are found by name or id, and the
reconciliation lists only containers carrying the broker's labels.
"""

from __future__ import annotations

import logging
import threading

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.tls import TLSConfig

from asci.progress import LogSink, TransferProgress
from broker import containers
from broker.backends.base import Backend, Capacity, LaunchSpec, Managed, NodeRef
from broker.errors import BackendError, NodeUnreachable

_LOG = logging.getLogger(__name__)
_UNREACHABLE = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError, OSError)
API_VERSION = "1.41"  # Docker 20.10; every call here exists in it, and newer engines still answer it


def docker_client(node: NodeRef, timeout: int = 30) -> docker.DockerClient:
    """A client of ``node``'s engine: a unix socket, or TCP with TLS when the node has certificates.

    The API version is fixed rather than negotiated, and the client ignores the process environment
    (``trust_env``): requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` replace the CA given in
    the TLS configuration (docker/docker-py#2433), which makes every call to a daemon with its own CA
    fail verification, and a negotiated version would make its first request before this is switched
    off. Proxy variables are ignored too: nodes are reached directly.
    """
    try:
        tls = None
        if node.docker_url.startswith("tcp://") and (node.tls_ca or node.tls_cert):
            tls = TLSConfig(client_cert=(node.tls_cert, node.tls_key) if node.tls_cert else None,
                            ca_cert=node.tls_ca or None, verify=node.tls_verify)
        client = docker.DockerClient(base_url=node.docker_url, tls=tls or False, timeout=timeout, version=API_VERSION)
    except DockerException as exc:
        raise NodeUnreachable(f"node {node.name}: cannot use {node.docker_url}: {exc}") from None
    client.api.trust_env = False
    return client


class DockerBackend(Backend):
    """Plain Docker containers, one client per node (cached, thread-safe to share)."""

    def __init__(self, timeout: int = 30, pull_timeout: int = 1800) -> None:
        self.timeout = timeout
        self.pull_timeout = pull_timeout
        self._clients: dict[NodeRef, docker.DockerClient] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ clients
    def client(self, node: NodeRef) -> docker.DockerClient:
        with self._lock:
            client = self._clients.get(node)
            if client is None:
                client = docker_client(node, self.timeout)
                self._clients[node] = client
            return client

    def _call(self, node: NodeRef, what: str, function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (NotFound, ImageNotFound):
            raise
        except APIError as exc:
            raise BackendError(f"node {node.name}: {what} failed: {exc.explanation or exc}") from None
        except requests.exceptions.SSLError as exc:
            raise NodeUnreachable(f"node {node.name}: the TLS connection failed ({what}): "
                                  f"{str(exc.args[0] if exc.args else exc)[-200:]}") from None
        except _UNREACHABLE as exc:
            raise NodeUnreachable(f"node {node.name} does not answer ({what}): {exc.__class__.__name__}") from None
        except DockerException as exc:
            raise NodeUnreachable(f"node {node.name}: {what} failed: {exc}") from None

    # ------------------------------------------------------------ contract
    def ping(self, node: NodeRef) -> None:
        self._call(node, "ping", self.client(node).ping)

    def info(self, node: NodeRef) -> dict:
        """``docker info`` of the node's engine."""
        return self._call(node, "info", self.client(node).info)

    def capacity(self, node: NodeRef) -> Capacity:
        info = self.info(node)
        return Capacity(float(info["NCPU"]), int(info["MemTotal"]))

    def has_network(self, node: NodeRef, name: str) -> bool:
        """True when the node's engine has a network called exactly ``name``."""
        client = self.client(node)
        return any(network.name == name
                   for network in self._call(node, "list networks", client.networks.list, names=[name]))

    def prepare_home(self, node: NodeRef, spec: LaunchSpec) -> None:
        """The user's home volume on the node, owned by the session's uid:gid (the Swarm backend uses it too)."""
        self._ensure_home(node, spec)

    def ensure_image(self, node: NodeRef, image: str, log: LogSink | None = None) -> bool:
        client = self.client(node)
        try:
            self._call(node, "inspect image", client.images.get, image)
            return False
        except ImageNotFound:
            pass
        repository, digest = image.split("@", 1)
        progress = TransferProgress(f"node {node.name}: pulling {image}", log or _LOG.info)

        def pull() -> None:
            for chunk in client.api.pull(repository, tag=digest, stream=True, decode=True):
                if "error" in chunk:
                    raise BackendError(f"node {node.name}: pull {image} failed: {chunk['error']}")
                progress.update(chunk)

        self._call(node, f"pull {image}", pull)
        progress.report()
        try:
            self._call(node, "inspect image", client.images.get, image)
        except ImageNotFound:
            raise BackendError(f"node {node.name}: pulling {image} did not give the image") from None
        return True

    def _ensure_home(self, node: NodeRef, spec: LaunchSpec) -> None:
        """Create the user's home volume, owned by the session uid:gid, on first use (none for a bound home)."""
        if spec.home_bind:
            return
        client = self.client(node)
        try:
            self._call(node, "inspect volume", client.volumes.get, spec.home_volume)
            return
        except NotFound:
            pass
        try:
            self._call(node, "create volume", client.volumes.create, spec.home_volume,
                       labels={containers.MANAGED: "1", "asci.user": spec.user_name})
        except BackendError:
            return  # created concurrently by another launch
        self._call(node, "prepare home", client.containers.run, spec.image,
                   entrypoint=["chown", f"{spec.uid}:{spec.gid}", "/home-volume"], user="0:0",
                   network_mode="none", remove=True, cap_drop=["ALL"], cap_add=["CHOWN"],
                   labels={containers.MANAGED: "helper"},
                   volumes={spec.home_volume: {"bind": "/home-volume", "mode": "rw"}})

    def start(self, node: NodeRef, spec: LaunchSpec) -> dict:
        client = self.client(node)
        self._ensure_home(node, spec)
        container = self._call(node, "create container", client.containers.create, **containers.create_params(spec))
        state = {"container_id": container.id, "container_name": spec.name}
        try:
            self._call(node, "start container", container.start)
        except BackendError:
            self.stop(node, state)
            raise
        return state

    @staticmethod
    def _ident(state: dict) -> str:
        return state.get("container_id") or state.get("container_name") or ""

    def container_id(self, node: NodeRef, state: dict) -> str:
        return state.get("container_id", "")

    def stop(self, node: NodeRef, state: dict) -> None:
        ident = self._ident(state)
        if not ident:
            return
        client = self.client(node)
        try:
            self._call(node, "remove container", client.api.remove_container, ident, force=True)
        except NotFound:
            return
        except BackendError as exc:
            if "already in progress" in str(exc) or "409" in str(exc):
                return
            raise

    def poll(self, node: NodeRef, state: dict) -> str | None:
        ident = self._ident(state)
        if not ident:
            return "missing"
        try:
            info = self._call(node, "inspect container", self.client(node).api.inspect_container, ident)
        except NotFound:
            return "missing"
        status = info["State"]
        if status.get("Running"):
            return None
        return f"exited {status.get('ExitCode')}"

    def list_managed(self, node: NodeRef, instance: str) -> list[Managed]:
        filters = {"label": [f"{containers.MANAGED}=1", f"{containers.LABEL_INSTANCE}={instance}"]}
        rows = self._call(node, "list containers", self.client(node).api.containers, all=True, filters=filters)
        found = []
        for row in rows:
            labels = row.get("Labels") or {}
            try:
                session_id = int(labels.get(containers.LABEL_SESSION, ""))
            except ValueError:
                continue
            name = (row.get("Names") or ["/"])[0].lstrip("/")
            found.append(Managed(session_id, {"container_id": row["Id"], "container_name": name},
                                 row.get("State") == "running", labels))
        return found

    def logs(self, node: NodeRef, state: dict, tail: int = 50) -> str:
        try:
            return self.client(node).api.logs(self._ident(state), tail=tail).decode(errors="replace")
        except Exception:  # noqa: BLE001 - logs are best effort
            return ""

    def exec(self, node: NodeRef, state: dict, command: list[str], user: str, environment: dict[str, str]
             ) -> tuple[int, str]:
        client = self.client(node)
        container = self._call(node, "inspect container", client.containers.get, self._ident(state))
        exit_code, output = self._call(node, "exec", container.exec_run, command, user=user,
                                       environment=environment)
        return exit_code, output.decode(errors="replace")

    def file_channel(self, node: NodeRef, state: dict):
        """Files of the session's container through ``docker exec`` as its user (``broker.backends.engine_files``)."""
        from broker.backends.engine_files import EngineFileChannel
        from broker.errors import NotFound as Missing

        def call(what: str, function, *args, **kwargs):
            try:
                return self._call(node, what, function, *args, **kwargs)
            except (NotFound, ImageNotFound):
                raise Missing("the desktop's container is gone") from None

        return EngineFileChannel(self.client(node).api, self._ident(state), call)

    def remove_volume(self, node: NodeRef, name: str) -> None:
        try:
            self._call(node, "remove volume", self.client(node).api.remove_volume, name, force=True)
        except NotFound:
            pass

    def discover_gpus(self, node: NodeRef, image: str) -> str:
        """Run nvidia-smi in a short-lived container with every GPU; its CSV output."""
        from broker.gpus import QUERY

        client = self.client(node)
        output = self._call(node, "nvidia-smi", client.containers.run, image, entrypoint=QUERY, remove=True,
                            network_mode="none",
                            device_requests=[docker.types.DeviceRequest(count=-1, capabilities=[["gpu", "utility"]])])
        return output.decode()

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
