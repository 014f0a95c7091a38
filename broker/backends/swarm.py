"""Sessions as Docker Swarm services (one replica, pinned to the chosen node): refused for new desktops.

A desktop must get the same hardening whatever the backend (``broker.containers``). A Swarm
service cannot carry all of it: Docker's service API (Engine API 1.41 here, docker-py 7.1.0) has
no field for no-new-privileges, none for a swap limit, and cannot put a task in network mode
``none`` (a service without networks gets the node's default network, a bridge with outbound access
on any node that has ``docker0``). So ``start`` refuses with that message and creates nothing;
the broker fails the launch with it. ``service_params`` is what a desktop service carries of the
hardening the API can express (user, every capability dropped, init, pids limit, memory and CPU
limits, /dev/shm as a sized tmpfs, the session's socket and password folders, GPU or
``NVIDIA_VISIBLE_DEVICES=void``, the facility's network when one is named), kept ready for an
engine that can express the rest; preparing the home volume on the node (as the Docker backend
does) would then be added too.

Everything else works, so services started before (or by another broker) are still watched,
re-adopted, stopped and removed. Tested with a fake client (``tests/unit/broker/test_swarm_backend.py``);
no swarm runs in the test suite.
"""

from __future__ import annotations

import docker
from docker.errors import APIError, NotFound
from docker.types import EndpointSpec, Mount, Resources, RestartPolicy

from broker import containers
from broker.backends.base import Backend, LaunchSpec, Managed, NodeRef
from broker.errors import BackendError, NodeUnreachable

# The hardening of ``broker.containers.create_params`` a service spec cannot express.
UNEXPRESSIBLE = (
    "no-new-privileges (a service's ContainerSpec has no field for it)",
    "a swap limit equal to the memory limit (services have no MemorySwap)",
    "network mode none (a service without networks gets the node's default network)",
)


class SwarmBackend(Backend):
    """Docker Swarm services through one manager endpoint."""

    def __init__(self, manager_url: str = "unix:///var/run/docker.sock", client=None) -> None:
        self.manager_url = manager_url
        self._client = client

    @property
    def client(self):
        if self._client is None:
            self._client = docker.DockerClient(base_url=self.manager_url, timeout=30)
        return self._client

    def service_params(self, node: NodeRef, spec: LaunchSpec) -> dict:
        """Keyword arguments for ``client.services.create``: what the API can express of the hardening."""
        env = containers.environment(spec)
        resources = Resources(cpu_limit=int(spec.cpus * 1e9), mem_limit=spec.memory_bytes,
                              generic_resources={"NVIDIA-GPU": 1} if spec.gpu_uuid else None)
        resources["Limits"]["Pids"] = spec.pids_limit  # API >= 1.41; docker-py's Resources has no argument for it
        shm = Mount(target="/dev/shm", source="", type="tmpfs", tmpfs_size=containers.shm_bytes(spec))
        return {
            "image": spec.image,
            "name": spec.name,
            "env": [f"{key}={value}" for key, value in env.items()],
            "user": f"{spec.uid}:{spec.gid}",
            "labels": dict(spec.labels),
            "container_labels": dict(spec.labels),
            "constraints": [f"node.hostname == {node.name}"],
            "networks": [] if spec.network in ("", "none") else [spec.network],
            "endpoint_spec": EndpointSpec(mode="dnsrr"),
            "mounts": [*containers.mounts(spec), shm],
            "resources": resources,
            "restart_policy": RestartPolicy(condition="none"),
            "cap_drop": ["ALL"],
            "init": True,
        }

    def ping(self, node: NodeRef) -> None:
        try:
            nodes = self.client.nodes.list(filters={"name": node.name})
        except Exception as exc:  # noqa: BLE001
            raise NodeUnreachable(f"swarm manager {self.manager_url} does not answer: {exc}") from None
        if not nodes or nodes[0].attrs.get("Status", {}).get("State") != "ready":
            raise NodeUnreachable(f"swarm node {node.name} is not ready")

    def ensure_image(self, node: NodeRef, image: str) -> bool:
        return False  # swarm pulls the digest on the node when the task starts

    def start(self, node: NodeRef, spec: LaunchSpec) -> dict:
        raise BackendError("the Swarm backend cannot start a desktop with the platform's isolation: Docker's "
                           f"service API cannot express {'; '.join(UNEXPRESSIBLE)}. Run desktops with the docker "
                           "backend (broker_backend = \"docker\", one Docker host per node).")

    @staticmethod
    def _ident(state: dict) -> str:
        return state.get("service_id") or state.get("service_name") or ""

    def stop(self, node: NodeRef, state: dict) -> None:
        ident = self._ident(state)
        if not ident:
            return
        try:
            self.client.services.get(ident).remove()
        except NotFound:
            return
        except APIError as exc:
            raise BackendError(f"swarm: removing service failed: {exc.explanation}") from None

    def poll(self, node: NodeRef, state: dict) -> str | None:
        ident = self._ident(state)
        if not ident:
            return "missing"
        try:
            service = self.client.services.get(ident)
        except NotFound:
            return "missing"
        tasks = service.tasks()
        if not tasks:
            return None  # not scheduled yet
        latest = max(tasks, key=lambda task: task.get("CreatedAt", ""))
        status = latest.get("Status", {}).get("State")
        if status in {"new", "pending", "assigned", "accepted", "preparing", "starting", "running"}:
            return None
        return f"task {status}: {latest.get('Status', {}).get('Err', '')}".strip()

    def list_managed(self, node: NodeRef, instance: str) -> list[Managed]:
        filters = {"label": [f"{containers.MANAGED}=1", f"{containers.LABEL_INSTANCE}={instance}"]}
        found = []
        for service in self.client.services.list(filters=filters):
            labels = service.attrs.get("Spec", {}).get("Labels", {})
            if f"node.hostname == {node.name}" not in service.attrs.get("Spec", {}).get("TaskTemplate", {}).get(
                    "Placement", {}).get("Constraints", []):
                continue
            try:
                session_id = int(labels.get(containers.LABEL_SESSION, ""))
            except ValueError:
                continue
            state = {"service_id": service.id, "service_name": service.name}
            found.append(Managed(session_id, state, self.poll(node, state) is None, labels))
        return found

    def container_id(self, node: NodeRef, state: dict) -> str:
        """The container id of the service's running task ("" while it has none)."""
        try:
            tasks = self.client.services.get(self._ident(state)).tasks(filters={"desired-state": "running"})
        except NotFound:
            return ""
        for task in tasks:
            container_id = task.get("Status", {}).get("ContainerStatus", {}).get("ContainerID")
            if container_id:
                return container_id
        return ""

    def exec(self, node: NodeRef, state: dict, command: list[str], user: str, environment: dict[str, str]
             ) -> tuple[int, str]:
        # The task runs on the node named in the constraint; with one manager per node (or a one-node
        # swarm) the manager's engine is the node's engine.
        container_id = self.container_id(node, state)
        if not container_id:
            raise BackendError("swarm: the session's task has no running container")
        container = self.client.containers.get(container_id)
        exit_code, output = container.exec_run(command, user=user, environment=environment)
        return exit_code, output.decode(errors="replace")

    def remove_volume(self, node: NodeRef, name: str) -> None:
        try:
            self.client.volumes.get(name).remove(force=True)
        except NotFound:
            pass
